"""Real-world Markdown markup: heading titles and the prompt-text cleaner.

Documentation sites add markup that renders as something else or as nothing: Hugo shortcodes
(``{{< tooltip text="…" >}}``, paired ``{{< note >}} … {{< /note >}}``, ``{{% … %}}``), heading
attributes (``## Title {#id .class}``), HTML comments and blocks, MDX components (``<Tabs>``,
``import … from``), Docusaurus ``:::note`` and MkDocs ``!!! note`` admonitions, definition lists,
images and link targets. `clean_heading` gives a heading's visible title (for heading paths);
`clean_text` gives a section's visible text (for prompts, via `core.prompts.clean_section`).

Code is kept verbatim (fenced blocks keep their fences, which mark them; inline code keeps its
backticks): nothing below rewrites inside code. The cleaner is idempotent (it runs to a fixpoint).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# ---- shortcodes ---------------------------------------------------------------------------------
# innermost first: no '{{' or '}}' inside, so nested shortcodes resolve from the inside out
_SHORTCODE = re.compile(r"\{\{([<%])\s*(/?)\s*([\w./-]+)((?:(?!\{\{|\}\}).)*?)\s*[>%]\}\}", re.S)
_ATTR_TEXT = re.compile(r"""\b(?:text|title|label|name)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_POSITIONAL = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)')""")


def _shortcode_text(m: re.Match[str], *, positional: bool) -> str:
    if m.group(2):  # closing {{< /note >}}: its body stays, the delimiter goes
        return ""
    args = m.group(4) or ""
    a = _ATTR_TEXT.search(args)
    if a:
        return a.group(1) if a.group(1) is not None else a.group(2)
    if positional:
        p = _POSITIONAL.match(args)
        if p:
            return p.group(1) if p.group(1) is not None else p.group(2)
    return ""


def unwrap_shortcodes(text: str, *, positional: bool = False) -> str:
    """Replace every shortcode by its visible text (a ``text=``/``title=``/``label=`` attribute, or
    with `positional` its first quoted argument) or by nothing; paired shortcodes keep their body."""
    while True:
        new = _SHORTCODE.sub(lambda m: _shortcode_text(m, positional=positional), text)
        if new == text:
            return text
        text = new


# ---- headings -----------------------------------------------------------------------------------
# trailing attribute block: {#id}, {#id .class key=v}, {.class}, kramdown {: #id}
_HEADING_ATTRS = re.compile(r"\s*\{:?\s*[#.][^{}]*\}\s*$")
_ANCHOR = re.compile(r"<a\s+(?:name|id)\s*=\s*[\"'][^\"']*[\"']\s*>\s*</a>|<a\s+(?:name|id)\s*=[^>]*/>", re.I)


def clean_heading(title: str) -> str:
    """A heading's visible title: attributes and anchors stripped, shortcodes resolved to their text (a
    heading made only of ``{{% heading "prerequisites" %}}`` is ``prerequisites``). A title with nothing
    visible gets a stable name: its shortcodes' names (``{{< toc >}}`` -> ``toc``), else its ids."""
    t = _ANCHOR.sub("", title)
    t = unwrap_shortcodes(t, positional=True)
    prev = None
    while prev != t:
        prev = t
        t = _HEADING_ATTRS.sub("", t)
    t = re.sub(r"\s+", " ", t).strip()
    if t:
        return t
    # nothing visible: a stable name (the shortcodes' names, else the attribute ids)
    names = [m.group(3).strip("/") for m in _SHORTCODE.finditer(title)] or re.findall(r"#([\w-]+)", title)
    return " ".join(names) or title.strip()


# ---- section text -------------------------------------------------------------------------------
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_IMAGE = re.compile(r"!\[[^\[\]]*\]\([^()\s]*(?:\s+\"[^\"]*\")?\)|!\[[^\[\]]*\]\[[^\[\]]*\]")
_LINK = re.compile(r"\[([^\[\]]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\[\]]+\]:\s*\S+.*(?:\n|$)", re.M)
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>")
_HTML_NAMES = (
    "a|abbr|b|blockquote|br|caption|center|code|col|colgroup|dd|del|details|div|dl|dt|em|figcaption|figure|"
    "font|h[1-6]|hr|i|iframe|img|ins|kbd|li|mark|ol|p|pre|s|section|small|span|strong|sub|summary|sup|"
    "table|tbody|td|tfoot|th|thead|tr|u|ul|video|audio|source|picture|nav|aside|article|header|footer|main"
)
# known HTML elements and MDX components (capitalised); `<start_of_turn>`, `a < b` and generics stay
_TAG = re.compile(rf"</?(?:(?:{_HTML_NAMES})\b|[A-Z][a-zA-Z][\w.]*)(?:\s[^<>]*)?/?>")
_INLINE_TAG = re.compile(r"</?(?:a|abbr|b|code|del|em|font|i|ins|kbd|mark|s|small|span|strong|sub|sup|u)\b")
_TAG_LABEL = re.compile(r"""\b(?:label|title)\s*=\s*(?:"([^"]*)"|'([^']*)'|\{["']([^"']*)["']\})""")
_MDX_IMPORT = re.compile(
    r"^(?:import\s.+?\sfrom\s+['\"][^'\"]+['\"];?|export\s+(?:const|default)\s.*)[ \t]*$", re.M
)
_DOCUSAURUS = re.compile(r"^[ \t]*:{3,}[ \t]*(\w*)[ \t]*(.*?)[ \t]*$")
_MKDOCS = re.compile(r"^([ \t]*)(?:!!!|\?\?\?\+?)[ \t]+[\w-]+(?:[ \t]+(?:\"([^\"]*)\"|'([^']*)'))?[ \t]*$")
_DEFINITION = re.compile(r"^ {0,3}:[ \t]+(.*)$")
_ATX_LINE = re.compile(r"^( {0,3}#{1,6}[ \t]+)(.*?)[ \t]*$")


def _mask(text: str) -> tuple[str, list[str]]:
    """Code (fenced blocks, inline spans) replaced by private-use placeholders; returns (text, codes)."""
    codes: list[str] = []

    def keep(s: str) -> str:
        codes.append(s)
        return f"\ue000{len(codes) - 1}\ue001"

    out: list[str] = []
    fence: str | None = None
    block: list[str] = []
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, block = m.group(1), [line]
        elif fence is not None:
            block.append(line)
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not line.strip().strip(fence[0])
            ):
                out.append(_keep_block(keep, block))
                fence = None
        else:
            out.append(line)
    if fence is not None:
        out.append(_keep_block(keep, block))
    masked = _INLINE_CODE.sub(lambda m: keep(m.group(0)), "".join(out))
    return masked, codes


def _keep_block(keep: Callable[[str], str], block: list[str]) -> str:
    """A fenced block's placeholder, its final line break left outside (line rules see line starts)."""
    raw = "".join(block)
    return keep(raw[:-1]) + "\n" if raw.endswith("\n") else keep(raw)


def _unmask(text: str, codes: list[str]) -> str:
    return re.sub(r"\ue000(\d+)\ue001", lambda m: codes[int(m.group(1))], text)


def _tag(m: re.Match[str]) -> str:
    lab = _TAG_LABEL.search(m.group(0))
    if lab and not m.group(0).startswith("</"):
        return next(g for g in lab.groups() if g is not None) + " "
    # no space where the tag starts or ends a line (other tags aside) or touches a space already
    src, a, b = m.string, m.start(), m.end()
    before = src[src.rfind("\n", 0, a) + 1 : a]
    after = src[b : (src.find("\n", b) + 1 or len(src) + 1) - 1]
    edge = not _TAG.sub("", before).strip() or not _TAG.sub("", after).strip()
    touching = before[-1:].isspace() or after[:1].isspace()
    return "" if edge or touching or _INLINE_TAG.match(m.group(0)) else " "


def _lines(text: str) -> str:
    """Line rules: admonition markers, MkDocs bodies dedented, definition lists flattened, heading
    attributes stripped."""
    out: list[str] = []
    dedent: str | None = None
    for line in text.split("\n"):
        if dedent is not None:
            if line.startswith(dedent + "    "):
                line = dedent + line[len(dedent) + 4 :]
            elif line.strip():
                dedent = None
        m = _MKDOCS.match(line)
        if m:
            title = m.group(2) if m.group(2) is not None else m.group(3)
            dedent = m.group(1)
            if title:
                out.append(m.group(1) + title)
            continue
        m = _DOCUSAURUS.match(line)
        if m:
            title = m.group(2)
            if title.startswith("[") and title.endswith("]"):
                title = title[1:-1]
            if title:
                out.append(title)
            continue
        m = _DEFINITION.match(line)
        if m:
            k = len(out) - 1
            while k >= 0 and not out[k].strip():
                k -= 1
            if k >= 0:
                del out[k + 1 :]
                sep = "; " if out[k].endswith("\ue002") else ": "
                out[k] = out[k].rstrip() + sep + m.group(1).strip() + "\ue002"
                continue
        m = _ATX_LINE.match(line)
        if m:
            line = m.group(1) + clean_heading(m.group(2))
        out.append(line)
    return "\n".join(out).replace("\ue002", "")


def _once(text: str) -> str:
    masked, codes = _mask(text)
    t = _COMMENT.sub("", masked)
    t = unwrap_shortcodes(t)
    t = _MDX_IMPORT.sub("", t)
    t = _IMAGE.sub("", t)
    t = _LINK.sub(lambda m: m.group(1), t)
    t = _REF_LINK.sub(lambda m: m.group(1), t)
    t = _LINK_DEF.sub("", t)
    t = _AUTOLINK.sub(lambda m: m.group(1), t)
    t = _TAG.sub(_tag, t)
    t = _lines(t)
    t = re.sub(r"[ \t]+$", "", t, flags=re.M)
    t = re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", t)
    t = re.sub(r"\n{3,}", "\n\n", t).strip("\n")
    return _unmask(t, codes)


def clean_text(text: str) -> tuple[str, bool]:
    """(visible text, fell_back): the cleaner run to a fixpoint; a non-empty section that would clean
    to nothing is returned raw with ``fell_back=True``."""
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    for _ in range(8):
        new = _once(t)
        if new == t:
            break
        t = new
    if not t.strip() and text.strip():
        return text, True
    return t, False
