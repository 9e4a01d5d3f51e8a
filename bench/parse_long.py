"""The strict answer parser stays linear on hostile answers (issue 19), as ratios measured in one run.

    python bench/parse_long.py              # answers of 64 KiB and 128 KiB
    python bench/parse_long.py --kib 256    # 256 KiB and 512 KiB (slower)

A prediction cell or JSONL line may hold up to 1 MiB. For each hostile shape (a letter repeated as
"A. A. A. ...", two letters alternating, a lead-in repeated, an option's text repeated) it times
``parse_answer`` on an answer of N and of 2N characters and prints

* RATIO: time(2N) / time(N)                                   target <= 2.5 (linear: 2; quadratic: 4)

and the time of the longest answer, so that a 1 MiB cell's cost can be read off (about 8x the 128 KiB one).
"""

from __future__ import annotations

import argparse
import time

from finer_datasets.eval.answers import parse_answer

OPTIONS = ["Yes, I can see a red apple on the table.", "No, but there is a green apple.", "No, but a red pear.",
           "No, but a red apple on a chair.", "No, but nothing."]
SHAPES = {"repeated letter": "A. ", "alternating letters": "(A) or (B) ", "repeated lead-in": "Answer: C ",
          "repeated option": "C. No, but a red pear. "}


def _time(text: str) -> float:
    start = time.perf_counter()
    parse_answer(text, OPTIONS)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kib", type=int, default=64, help="the shorter answer's size in KiB")
    args = p.parse_args()
    size = args.kib * 1024
    worst = 0.0
    for name, unit in SHAPES.items():
        short, long_ = ((unit * (n // len(unit) + 1))[:n] for n in (size, 2 * size))
        t1, t2 = _time(short), _time(long_)
        worst = max(worst, t2 / t1)
        print(f"{name:>20}: {t1:6.2f} s at {args.kib} KiB, {t2:6.2f} s at {2 * args.kib} KiB: RATIO {t2 / t1:.2f}")
    print(f"RATIO worst {worst:.2f} (target <= 2.5: linear)")


if __name__ == "__main__":
    main()
