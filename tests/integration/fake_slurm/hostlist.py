"""Slurm's node list syntax, as `scontrol show hostnames` expands it: "gpu[01-03,7],cpu1"."""


def _split_top(text):
    """Splits at commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item]


def _expand_item(item):
    if "[" not in item:
        return [item]
    prefix, rest = item.split("[", 1)
    ranges, suffix = rest.split("]", 1)
    names = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        width = len(lo)
        for n in range(int(lo), int(hi or lo) + 1):
            names += [f"{prefix}{n:0{width}d}{tail}" for tail in _expand_item(suffix)]
    return names


def expand(nodelist):
    return [name for item in _split_top(nodelist) for name in _expand_item(item)]
