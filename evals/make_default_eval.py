"""Generate the embedded default evaluation set (autorag_hp/data/default_eval/).

The set is synthetic and says so: profiles of fictional institutions in fictional towns.
It is built so that every knob of the reference pipeline matters:

* each profile names its institution only in its first sentence; later sentences say
  "it" or "the observatory", so a chunk too small to hold the name loses the cue that
  retrieval needs (``chunk_size``), while big chunks cost prompt tokens;
* towns and institution kinds repeat ("Varnholt Observatory", "Varnholt Shipyard",
  "Quessing Observatory"), so the first hit is often a near namesake and a few more
  chunks are needed (``top_k``);
* questions paraphrase the fact ("When did ... open?" for "was founded in"), so word
  overlap (BM25) and meaning (dense embedders) disagree (``embedder``);
* every profile carries facts the question does not ask about, so keeping only the
  sentences closest to the question saves tokens, up to a point (``compression``).

Each answer string occurs once in the corpus. Run from the repository root:

    python evals/make_default_eval.py [--out autorag_hp/data/default_eval] [--seed 7]
    python evals/make_default_eval.py --table     # the knob-effect table in docs/pipeline.md
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TOWNS = ["Varnholt", "Quessing", "Ardlow", "Mirebeck", "Tollan", "Essendry"]
KINDS = {
    "observatory": "{name} is an astronomical observatory on the hills above {town}.",
    "shipyard": "{name} is a shipyard at the river mouth of {town}.",
    "library": "{name} is a public library in the old quarter of {town}.",
    "brewery": "{name} is a brewery on the market square of {town}.",
}
FIRST = ["Ada", "Bram", "Celia", "Dorin", "Elsa", "Fenn", "Greta", "Hollis", "Ines", "Joran", "Kasia", "Lenn",
         "Mira", "Nils", "Oona", "Pavel", "Rhea", "Soren", "Tilda", "Ulric", "Vera", "Wendel", "Yara", "Zeno"]
LAST = ["Ostrand", "Brell", "Kettering", "Vasko", "Marrow", "Delacourt", "Fenwick", "Harl", "Ibsley", "Jorvik",
        "Lunde", "Morcant", "Norquist", "Pellam", "Quill", "Rastow", "Selwyn", "Thorne", "Umber", "Valk"]
COLOURS = ["saffron", "cobalt", "vermilion", "pewter", "viridian", "umber", "cerise", "ochre", "indigo", "russet"]
ANIMALS = ["heron", "lynx", "otter", "falcon", "badger", "stag", "wren", "marten", "ibex", "crane", "hare", "owl"]

# (fact sentence, question template, answer key). Facts never name the institution;
# questions name it and paraphrase the fact.
FACTS = [
    ("The {noun} was founded in {year} by the merchant {founder}.", "In what year did {name} open its doors?", "year"),
    ("Its emblem, a {emblem}, is painted above the main gate.", "What creature is shown on the crest of {name}?", "emblem"),
    ("These days the {noun} employs {staff} people, most of them from nearby villages.",
     "How many workers does {name} have?", "staff"),
    ("A fire in {fire_year} destroyed the east wing, which was rebuilt in stone.", "When did a blaze damage {name}?",
     "fire_year"),
    ("The current director, {director}, took office after a long dispute with the council.",
     "Who leads {name} today?", "director"),
]
# Sentences that carry no asked-for fact; those with {name} re-mention the institution.
FILLER = [
    "Visitors from {town} often stop by on their way to the harbour.",
    "People in {town} still argue about the colour of its shutters.",
    "A road from the centre of {town} leads straight to its gate.",
    "The mayor of {town} dines there once a year.",
    "Children in {town} learn its story at school.",
    "Postcards from {town} usually show its front steps.",
    "The building has been extended several times since then.",
    "Local newspapers have reported on its affairs for decades.",
    "Its archive holds letters, ledgers and drawings from every period.",
    "Several of its early records were lost during the floods.",
    "A small garden behind the main hall is open in summer.",
    "Students from the regional college often work there as volunteers.",
    "Its staff publish an annual report that few people read.",
    "The roof was repaired with slate from a quarry in the north.",
    "A bronze bell in the tower rings at noon on feast days.",
    "Nobody remembers why the side entrance was bricked up.",
    "The main hall is heated by two large iron stoves.",
    "Its accounts were audited by the provincial treasury.",
    "A painted map of the coast hangs in the entrance hall.",
    "The old well in the yard has been dry for a century.",
]
CHRONICLE = [
    "{town} is a market town known for its bridges and its fog.",
    "The {town} council meets in a timber hall beside the river.",
    "Most families in {town} have worked for one of its institutions.",
    "Among them are {names}.",
    "The town's fortunes rose and fell with the river trade.",
    "Travellers reach {town} by the coast road or by ferry.",
    "Every autumn {town} holds a lantern procession through the old streets.",
]


def build(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    used: set[str] = set()

    def unique(make):
        for _ in range(10_000):
            v = make()
            if v not in used:
                used.add(v)
                return v
        raise RuntimeError("ran out of unique values")

    corpus: list[dict] = []
    questions: list[dict] = []
    for town in TOWNS:
        for kind, intro_t in KINDS.items():
            name = f"the {town} {kind.capitalize()}"
            pid = f"{town.lower()}-{kind}"
            values = {
                "name": name,
                "town": town,
                "noun": kind,
                "year": unique(lambda: str(rng.randint(1601, 1899))),
                "founder": unique(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
                "emblem": unique(lambda: f"{rng.choice(COLOURS)} {rng.choice(ANIMALS)}"),
                "staff": unique(lambda: str(rng.randint(23, 980))),
                "fire_year": unique(lambda: str(rng.randint(1901, 1999))),
                "director": unique(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
            }
            # every third sentence names the town, so a chunk of a few sentences keeps the cue
            town_fill = [f.format(**values) for f in rng.sample(FILLER[:6], 5)]
            plain = [f.format(**values) for f in rng.sample(FILLER[6:], 10)]
            facts = [f[0].format(**values) for f in FACTS]
            rest = facts + plain
            rng.shuffle(rest)
            body = []
            for i, sent in enumerate(rest):
                if i % 3 == 2 and town_fill:
                    body.append(town_fill.pop())
                body.append(sent)
            body += town_fill
            intro = intro_t.format(**values)
            sentences = [intro[0].upper() + intro[1:]] + [b[0].upper() + b[1:] for b in body]
            corpus.append({"id": pid, "title": name.removeprefix("the "), "text": " ".join(sentences)})
            for _, qt, key in FACTS:
                q = qt.format(**values)
                questions.append(
                    {"id": f"{pid}-{key}", "question": q[0].upper() + q[1:], "answers": [values[key]],
                     "gold_passages": [pid]}
                )
        names = [f"the {town} {k.capitalize()}" for k in KINDS]
        listing = ", ".join(names[:-1]) + " and " + names[-1]
        chron = [c.format(town=town, names=listing) for c in CHRONICLE]
        corpus.append({"id": f"{town.lower()}-town", "title": town, "text": " ".join(chron)})

    def occurrences(ans: str) -> int:
        return sum(f" {ans} " in " " + p["text"].replace(".", " ").replace(",", " ") + " " for p in corpus)

    questions = [q for q in questions if occurrences(q["answers"][0]) == 1]
    return corpus, questions


def knob_table() -> str:
    """Markdown table of each knob's effect around the best configuration of the default grid."""
    import numpy as np

    from autorag_hp.pipeline import ReferencePipeline, default_space, load_default_dataset, run_grid

    ds, space = load_default_dataset(), default_space()
    grid = run_grid(ReferencePipeline.from_space(ds, space), ds, space)
    reward, aic, tokens = grid.mean_rewards(), grid.mean("answer_in_context"), grid.mean("prompt_tokens")
    best = max(reward, key=lambda i: (reward[i], -i))
    best_cfg = space.config(best)
    lines = [
        f"Best configuration: {best_cfg} (mean reward {reward[best]:.4f}; runner-up "
        f"{sorted(reward.values())[-2]:.4f}; w = {grid.w}, t_max = {grid.t_max:.0f}).",
        "",
        "| knob | value | reward (others at best) | answer in context | prompt tokens | marginal mean reward |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in space.names:
        for v in space.values(name):
            i = space.index({**best_cfg, name: v})
            marginal = np.mean([reward[space.index(c)] for c in space if c[name] == v])
            mark = " **(best)**" if v == best_cfg[name] else ""
            lines.append(f"| {name} | {v}{mark} | {reward[i]:.4f} | {aic[i]:.3f} | {tokens[i]:.0f} | {marginal:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="autorag_hp/data/default_eval")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--table", action="store_true", help="print the knob-effect table of the shipped set and exit")
    args = ap.parse_args()
    if args.table:
        print(knob_table())
        return
    corpus, questions = build(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for p in corpus:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    with open(out / "questions.jsonl", "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    print(f"wrote {len(corpus)} passages and {len(questions)} questions to {out}")


if __name__ == "__main__":
    main()
