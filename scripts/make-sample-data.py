#!/usr/bin/env python3
"""Writes stacks/data/socratiq-sample.jsonl: a small synthetic dataset in the shape of SocratiQ
(the SocratiQ campaign: a statement in, a Socratic question out) for the dev campaign and its rehearsal.

    python3 scripts/make-sample-data.py            # 2,000 rows, seed 7, deterministic
"""
import argparse
import json
import random
from pathlib import Path

SUBJECTS = ["homework", "exercise", "social media", "remote work", "nuclear power", "school uniforms",
            "video games", "city parks", "public transport", "online news", "space research", "tipping"]
CLAIMS = ["is always a waste of time", "makes people happier", "should be banned", "is the best option for everyone",
          "does more harm than good", "is too expensive", "will solve the problem", "is only for experts"]
REASONS = ["my friend said so", "I read it once", "it worked for me", "everyone knows it", "the numbers look good",
           "it feels obvious", "my teacher told me", "nobody complains about it"]
QUESTIONS = [
    "What evidence would change your mind about whether {s} {c}?",
    "How do you know that {s} {c}, beyond the fact that {r}?",
    "Is there a case where {s} does not fit the claim that it {c}?",
    "What do you mean exactly when you say {s} {c}?",
    "Why does the fact that {r} support the view that {s} {c}?",
    "What would follow if it were true that {s} {c}?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "stacks/data/socratiq-sample.jsonl")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for i in range(args.rows):
            s, c, r = rng.choice(SUBJECTS), rng.choice(CLAIMS), rng.choice(REASONS)
            context = f"I believe that {s} {c}, because {r}."
            question = rng.choice(QUESTIONS).format(s=s, c=c, r=r)
            out.write(json.dumps({"id": i, "context": context, "question": question}) + "\n")
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
