"""The run's plan: every input file in one global order (sources in pipeline order, files sorted
within a source), each worker's share of them, and where each file's outputs live. Every
per-file output is named after the file, never after the worker, so the dataset does not depend
on the number of workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from olmo.data.shards import MANIFEST_NAME
from olmo.storage import Location

from ..config import PipelineConfig
from ..input_files import iter_input_files
from ..readers import InputPath


class PipelineError(RuntimeError):
    """A run that cannot go on (a different pipeline in the output folder, a barrier timeout)."""


@dataclass(frozen=True)
class InputFile:
    """One input file: its place in the global order (``key`` names its outputs) and source."""

    index: int
    source: str
    path: InputPath
    """A local path, or a ``Location`` on an object store."""

    @property
    def key(self) -> str:
        return f"f{self.index:06d}"


def plan_inputs(config: PipelineConfig) -> list[InputFile]:
    """Every input file in the global order: sources in pipeline order, files sorted."""
    files: list[InputFile] = []
    owner: dict[Path | Location, str] = {}
    for source in config.sources:
        for path in iter_input_files(source.paths):
            resolved = path if isinstance(path, Location) else path.resolve()
            if resolved in owner:
                raise PipelineError(
                    f"{path} is an input of both source {owner[resolved]!r} and {source.name!r}"
                )
            owner[resolved] = source.name
            files.append(InputFile(len(files), source.name, path))
    return files


def worker_files(
    files: Sequence[InputFile], worker_index: int, num_workers: int
) -> list[InputFile]:
    """The files of one worker: every ``num_workers``-th file from ``worker_index``."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index}")
    return list(files[worker_index::num_workers])


class Layout:
    """Where everything of one run lives under the output folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.work = self.out / "work"
        self.manifest = self.out / MANIFEST_NAME
        self.summary = self.out / "summary.json"
        self.tokenizer = self.out / "tokenizer.json"
        self.accounting = self.out / "accounting"
        self.config = self.work / "config.json"
        self.logs = self.out / "logs"

    def map_table(self, f: InputFile) -> Path:
        return self.work / "map" / f"{f.key}.parquet"

    def tok_dir(self) -> Path:
        return self.work / "tok"

    def tok_done(self, f: InputFile) -> Path:
        return self.work / "tok" / f"{f.key}.json"

    def tok_table(self, f: InputFile) -> Path:
        return self.work / "tok" / f"{f.key}.parquet"

    def final_done(self, f: InputFile) -> Path:
        return self.work / "final" / f"{f.key}.json"

    def accounting_table(self, f: InputFile) -> Path:
        return self.accounting / f"{f.key}.parquet"
