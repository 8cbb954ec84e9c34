"""Hand-made inputs for the pipeline tests: English documents that pass every filter by default,
and writers for the input formats (including broken files)."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from olmo_dataprep.badwords import BadWordsConfig, BadWordsFilter

SENTENCES = (
    "The river that runs past the old mill has been used to grind grain for more than a century.",
    "Most of the farmers in the valley bring their harvest to the mill at the end of the summer.",
    "A careful engineer checks the water wheel and the gears before each season begins.",
    "Children from the village often watch the wheel turn and ask how the stones are shaped.",
    "The miller keeps a ledger with the weight of every sack and the name of its owner.",
    "When the river is low, the wheel turns slowly and the work takes twice as long.",
    "In the winter the building is quiet, and the family repairs the roof and the doors.",
    "Visitors are welcome to walk along the path that follows the water to the bridge.",
    "The bridge was rebuilt with stone after a flood carried the wooden one away.",
    "Local historians have collected letters that describe daily life at the mill.",
    "One of the letters tells of a storm that broke the windows and scattered the flour.",
    "The school teacher brings her class every spring to learn about simple machines.",
    "A small museum near the entrance shows tools that were used by earlier millers.",
    "Some of the tools are made of iron, and others were carved from oak and ash.",
    "The town council voted to protect the mill as part of the regional heritage.",
    "Volunteers paint the fences and clear the fallen branches after each storm.",
    "Bakers in the nearby town say the flour has a taste that they cannot find elsewhere.",
    "The recipe for the bread sold at the market has not changed in three generations.",
    "During the festival the square is filled with music, stalls and the smell of bread.",
    "Old photographs show horses pulling carts loaded with grain up the steep road.",
    "The road was paved later, and trucks now carry the sacks to the railway station.",
    "Engineers from the university measured how much power the wheel can produce.",
    "Their report suggested that the mill could light every house on the main street.",
    "The family decided to install a small generator that runs when the river is high.",
    "On clear evenings the lamps along the path are powered by the turning wheel.",
    "Birds build their nests under the roof, and the children count them each year.",
    "A retired sailor who lives nearby tells stories about the ships he once steered.",
    "He says that the sound of the wheel reminds him of waves against a wooden hull.",
    "The library keeps a copy of every newspaper article written about the valley.",
    "Students use the archive to write essays about the history of work and water.",
    "Each autumn the leaves cover the water, and the wheel must be cleaned by hand.",
    "The oldest millstone now rests in the garden, where it serves as a table.",
)


def english_doc(rng: random.Random, sentences: int = 10) -> str:
    """One paragraph of plain English that passes the Gopher rules and language ID."""
    return " ".join(rng.sample(SENTENCES, sentences))


def english_docs(n: int, seed: int = 0, paragraphs: int = 1, sentences: int = 10) -> list[str]:
    """Documents of ``paragraphs`` paragraphs with no sentence repeated within a document (a
    repeat would trip the Gopher duplicate n-gram rules)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        picked = rng.sample(SENTENCES, paragraphs * sentences)
        chunks = [picked[i * sentences : (i + 1) * sentences] for i in range(paragraphs)]
        docs.append("\n\n".join(" ".join(chunk) for chunk in chunks))
    return docs


FRENCH = (
    "Le moulin se trouve au bord de la rivière depuis plus de cent ans, et les habitants du "
    "village y apportent leur blé chaque été. Les enfants regardent la roue tourner pendant que "
    "le meunier note le poids de chaque sac dans son grand cahier. En hiver, la famille répare "
    "le toit et les portes, et les visiteurs se promènent le long du chemin jusqu'au pont de "
    "pierre qui a remplacé l'ancien pont de bois emporté par une crue."
)
"""A document language ID drops (French)."""


def bad_word() -> str:
    """A single word from the packaged list (not spelled out in this file)."""
    text = (importlib.resources.files("better_profanity") / "profanity_wordlist.txt").read_text()
    candidates = [w for w in text.split() if w.isalpha() and len(w) > 3]
    return BadWordsFilter(BadWordsConfig()).find(" ".join(candidates))[0]


def write_jsonl_gz(path: Path, records: Iterable[dict[str, Any] | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    return path


def write_jsonl(path: Path, records: Iterable[dict[str, Any] | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_pipeline(path: Path, data: dict[str, Any]) -> Path:
    """A pipeline file; a small trained tokenizer unless the test says otherwise (no network)."""
    data = dict(data)
    data.setdefault("tokenizer", {"name": "train", "train_vocab_size": 400})
    data.setdefault("processes", 1)  # a pool costs a second of start-up; tests that want one say so
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
