"""A synthetic dataset shaped like SocSci210 (the SocSci210 campaign, docs/campaigns.md): alpaca rows with study_id, condition_num, sample_id
and participant, a known number of exact duplicates, too-short rows and malformed lines, so tests can
assert exact counts. Also used by scripts/bench-prep.py.

    python test/python/socsci.py --rows 1000 --studies 21 --out /tmp/socsci.jsonl
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

_WORDS = (
    "trust fairness risk reward neighbour stranger money donation vote policy group loss gain choice "
    "public private offer accept reject cooperate defect message anonymous partner round payoff"
).split()

_MALFORMED_KINDS = ("bad_json", "missing_output", "wrong_type")


@dataclass
class Truth:
    """What the generator wrote: the counts a correct prep job must report."""

    lines: int = 0
    valid_unique: int = 0
    duplicates: int = 0
    short: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in _MALFORMED_KINDS})
    rows_per_study: dict[str, int] = field(default_factory=dict)  # unique valid rows (what survives prep)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def study_name(index: int) -> str:
    return f"study_{index:03d}"


def generate(
    path: Path,
    *,
    rows: int,
    studies: int = 210,
    duplicate_every: int = 50,
    short_every: int = 200,
    malformed_every: int = 1000,
    seed: int = 7,
) -> Truth:
    """Writes `rows` JSONL lines to `path`; every Nth line is a duplicate, a too-short row or a malformed line.

    Short rows have every text field under 5 characters (prep with cleaning.minChars = 5 removes them).
    """
    rng = random.Random(seed)
    truth = Truth()
    instructions = [
        f"You are a behavioral prediction model for study {study_name(s)}. Predict how the participant "
        f"answers the question on a 1-7 scale. Topic: {' '.join(rng.choice(_WORDS) for _ in range(12))}."
        for s in range(studies)
    ]
    written: list[str] = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            study = i % studies
            sid = study_name(study)
            line: str
            if malformed_every and i % malformed_every == malformed_every - 1:
                kind = _MALFORMED_KINDS[(i // malformed_every) % len(_MALFORMED_KINDS)]
                truth.malformed[kind] += 1
                if kind == "bad_json":
                    line = '{"instruction": "broken line ' + str(i) + '", "input": '
                elif kind == "missing_output":
                    line = json.dumps({"instruction": instructions[study], "input": f"row {i}", "study_id": sid})
                else:
                    line = json.dumps({"instruction": instructions[study], "input": f"row {i}", "output": i, "study_id": sid})
            elif duplicate_every and i % duplicate_every == duplicate_every - 1 and written:
                line = written[rng.randrange(len(written))]
                truth.duplicates += 1
            elif short_every and i % short_every == short_every - 2:
                line = json.dumps({"instruction": "Hi", "input": "", "output": str(i % 10), "study_id": sid,
                                   "condition_num": 0, "sample_id": i, "participant": i})
                truth.short += 1
            else:
                condition = rng.randrange(4)
                scenario = " ".join(rng.choice(_WORDS) for _ in range(30))
                row = {
                    "instruction": instructions[study],
                    "input": f"Demographics: participant {i}, age {18 + i % 60}, condition {condition}. Scenario: {scenario}",
                    "output": f"Response: {1 + rng.randrange(7)}",
                    "study_id": sid,
                    "condition_num": condition,
                    "sample_id": i,
                    "participant": i,
                }
                line = json.dumps(row)
                if len(written) < 10_000:
                    written.append(line)
                truth.valid_unique += 1
                truth.rows_per_study[sid] = truth.rows_per_study.get(sid, 0) + 1
            out.write(line)
            out.write("\n")
            truth.lines += 1
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--studies", type=int, default=210)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--malformed-every", type=int, default=1000)
    args = parser.parse_args()
    truth = generate(args.out, rows=args.rows, studies=args.studies, malformed_every=args.malformed_every)
    print(json.dumps({"lines": truth.lines, "validUnique": truth.valid_unique, "duplicates": truth.duplicates,
                      "short": truth.short, "malformed": truth.malformed}))


if __name__ == "__main__":
    main()
