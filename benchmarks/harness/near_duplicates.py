"""Near-duplicate blocks: two places sharing at least WINDOW consecutive source lines once identifiers, strings and
numbers are placeholders (blank, comment-only and import lines left out, and lines of literals and brackets alone:
data, docstrings, closing brackets). A hashed sliding window."""

from __future__ import annotations

import io
import keyword
import tokenize
from collections import defaultdict
from itertools import combinations

WINDOW = 6
# Python 3.12 splits f-strings into parts; each part is a placeholder like a string.
FSTRING = {
    getattr(tokenize, name) for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, name)
}
LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT}


def normalised_lines(source: str) -> list[tuple[int, str]]:
    """(line number, line with every name N, string S and number 0) for each line that holds code other than an
    import statement; a string spanning lines counts on its first line only."""
    lines: dict[int, list[str]] = defaultdict(list)
    named = set()  # lines with a name or a keyword
    statement_start, in_import = True, False
    for kind, text, (row, _), _, _ in tokenize.generate_tokens(io.StringIO(source).readline):
        if kind == tokenize.NEWLINE:
            statement_start, in_import = True, False
            continue
        if kind in LAYOUT or kind == tokenize.ENDMARKER:
            continue
        if statement_start:
            statement_start, in_import = False, text in ("import", "from")
        if in_import:
            continue
        if kind == tokenize.NAME:
            named.add(row)
        if kind == tokenize.NAME and not keyword.iskeyword(text):
            text = "N"
        elif kind == tokenize.STRING or kind in FSTRING:
            text = "S"
        elif kind == tokenize.NUMBER:
            text = "0"
        lines[row].append(text)
    # A line of literals and brackets alone (a list's entries, a docstring, a closing bracket) is data, not code.
    return [(row, " ".join(parts)) for row, parts in sorted(lines.items()) if row in named]


def near_duplicate_blocks(files: dict[str, str], window: int = WINDOW) -> list[dict]:
    """Each maximal block that two places share, as {a: "path:line", b: "path:line", lines: n}."""
    places = defaultdict(list)  # window hash -> (path, index)
    code = {}
    for path, source in sorted(files.items()):
        code[path] = normalised_lines(source)
        texts = [text for _, text in code[path]]
        for start in range(len(texts) - window + 1):
            lines = tuple(texts[start : start + window])
            if len(set(lines)) > 1:  # one line repeated (a list of names, one per line) is not a block
                places[hash(lines)].append((path, start))
    shared = set()
    for found in places.values():
        for (path_a, a), (path_b, b) in combinations(found, 2):
            if path_a != path_b or abs(a - b) >= window:  # not a block overlapping itself
                shared.add((path_a, a, path_b, b))
    blocks = []
    for path_a, a, path_b, b in sorted(shared):
        if (path_a, a - 1, path_b, b - 1) in shared:
            continue  # inside a block that began earlier
        length = window
        while (path_a, a + length - window + 1, path_b, b + length - window + 1) in shared:
            length += 1
        blocks.append({"a": f"{path_a}:{code[path_a][a][0]}", "b": f"{path_b}:{code[path_b][b][0]}", "lines": length})
    return blocks
