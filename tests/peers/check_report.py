#!/usr/bin/env python3
"""Checks a kvcache-bench HTML report as a browser rendered it against the run's JSON.

usage: check_report.py RENDERED_DOM REPORT_HTML RESULTS_JSON

RENDERED_DOM is `chromium --headless --dump-dom` of REPORT_HTML (the page after its script
ran); RESULTS_JSON is what `--output` wrote for the same run. Checks that the page embeds
exactly that JSON, that its script finished without errors, and that every chart point,
summary cell, verdict and parameter shown carries the value the JSON has. Exits 1 with a
list of differences otherwise. Standard library only.
"""

import json
import math
import re
import sys
from html.parser import HTMLParser


class Elements(HTMLParser):
    """Collects the attributes of every element, and of <body>."""

    def __init__(self):
        super().__init__()
        self.elements = []
        self.body = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        self.elements.append((tag, a))

    handle_startendtag = handle_starttag


def close(a, b):
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def same_value(shown, expected):
    """data-value (JS String(v)) against a JSON value."""
    if expected is None:
        return shown == "null"
    if isinstance(expected, bool):
        return shown == ("true" if expected else "false")
    if isinstance(expected, (int, float)):
        try:
            return close(shown, expected)
        except ValueError:
            return False
    return shown == str(expected)


def main():
    dom_path, html_path, json_path = sys.argv[1:4]
    problems = []
    raw_json = open(json_path, encoding="utf-8").read()
    data = json.loads(raw_json)
    page = open(html_path, encoding="utf-8").read()

    m = re.search(r'<script type="application/json" id="kvcache-data">(.*?)</script>', page, re.S)
    if not m:
        sys.exit("the report embeds no kvcache-data script")
    if json.loads(m.group(1)) != data:
        problems.append("the JSON embedded in the page differs from the --output file")
    lower = page.lower()
    for banned in (" src=", " href=", "url(", "@import", "fetch(", "xmlhttprequest", "<link"):
        if banned in lower:
            problems.append(f"the page could fetch something: it contains {banned!r}")
    if "content-security-policy" not in lower or "default-src 'none'" not in lower:
        problems.append("the page lacks its Content-Security-Policy (default-src 'none')")

    p = Elements()
    p.feed(open(dom_path, encoding="utf-8").read())
    if p.body.get("data-render") != "ok":
        problems.append(f"the page's script did not finish: data-render={p.body.get('data-render')!r}, "
                        f"errors={p.body.get('data-errors')!r}")

    targets = [data] + ([data["compared_with"]] if data.get("compared_with") else [])
    charted = {}
    for tag, a in p.elements:
        if "data-chart" in a:
            charted.setdefault((a["data-chart"], int(a["data-target"])), []).append(a)

    for i, t in enumerate(targets):
        who = t["label"]
        # Throughput: one point per second of the timeline, with its count and span.
        pts = charted.get(("throughput", i), [])
        want = [(e["t"], e["span"], e["requests"], e["round"]) for e in t["timeline"]]
        got = [(float(a["data-t"]), float(a["data-span"]), int(a["data-requests"]), int(a["data-round"]))
               for a in pts]
        if len(got) != len(want) or any(
            not (close(g[0], w[0]) and close(g[1], w[1]) and g[2] == w[2] and g[3] == w[3])
            for g, w in zip(got, want)
        ):
            problems.append(f"{who}: throughput points {got[:5]}... differ from the timeline {want[:5]}...")
        if not want:
            problems.append(f"{who}: the timeline is empty")
        # Latency percentiles: one point per percentile with a latency.
        pts = charted.get(("latency", i), [])
        want = [(x["percentile"], x["latency_ms"]) for x in t["percentiles"] if x["latency_ms"] > 0]
        got = [(float(a["data-percentile"]), float(a["data-latency"])) for a in pts]
        if len(got) != len(want) or any(not (close(g[0], w[0]) and close(g[1], w[1])) for g, w in zip(got, want)):
            problems.append(f"{who}: latency points differ from the percentiles")
        if want and (want[0][0] != 50 or want[-1][0] != 99.99):
            problems.append(f"{who}: the percentile curve does not run from p50 to p99.99: {want[0][0]}..{want[-1][0]}")
        # Errors: a bar for every second with failed requests or failed reconnects.
        pts = charted.get(("errors", i), [])
        want = sorted(
            [("failed", e["t"], e["failed"]) for e in t["timeline"] if e["failed"]]
            + [("reconnect", e["t"], e["reconnect_failures"]) for e in t["timeline"] if e["reconnect_failures"]]
        )
        got = sorted((a["data-kind"], float(a["data-t"]), int(a["data-count"])) for a in pts)
        if len(got) != len(want) or any(g[0] != w[0] or not close(g[1], w[1]) or g[2] != w[2]
                                        for g, w in zip(got, want)):
            problems.append(f"{who}: error bars {got} differ from the timeline {want}")

    # Summary cells and verdicts, per target.
    fields = 0
    for tag, a in p.elements:
        if "data-field" not in a:
            continue
        field, shown = a["data-field"], a.get("data-value")
        if "data-target" in a:
            t = targets[int(a["data-target"])]
            if field == "assessment":
                if shown not in [c["verdict"] for c in t["assessment"]]:
                    problems.append(f"{t['label']}: assessment verdict {shown!r} not in the JSON")
            elif not same_value(shown, t.get(field)):
                problems.append(f"{t['label']}: {field} shows {shown!r}, the JSON has {t.get(field)!r}")
        else:
            # Run parameters come from the first target's document.
            if field == "seed":
                exact = re.search(r'"seed":\s*(\d+)', raw_json).group(1)
                ok = shown == exact
            else:
                ok = same_value(shown, data.get(field))
            if not ok:
                problems.append(f"parameter {field} shows {shown!r}, the JSON has {data.get(field)!r}")
        fields += 1
    if fields < 20:
        problems.append(f"only {fields} data fields on the page")
    for t in targets:
        if t["verdict"] == "PASS" and (t["failed_requests"] or t["not_sent_requests"] or t["stopped_early"]):
            problems.append(f"{t['label']}: PASS on a run with failures")

    if problems:
        print("report check FAILED:")
        for x in problems:
            print("  - " + x)
        sys.exit(1)
    print(f"report check passed: {len(targets)} target(s), {sum(len(v) for v in charted.values())} chart marks, "
          f"{fields} fields match the JSON")


if __name__ == "__main__":
    main()
