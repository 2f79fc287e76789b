import pytest

from core.errors import ValidationFailed
from core.prompt_limits import normalize_prompt_limits, prompt_allowed


@pytest.mark.parametrize(
    ("limits", "name", "allowed"),
    [
        (None, "billing.invoice", True),
        (("support.*",), "support.answer", True),
        (("support.*",), "support", False),
        (("support.*",), "supportx.answer", False),
        (("support*",), "supportx.answer", True),
        (("support.answer",), "support.answer", True),
        (("support.answer",), "support.answer2", False),
        (("a", "billing.*"), "billing.x", True),
        ((), "support.answer", False),
    ],
)
def test_a_name_is_allowed_by_an_exact_name_or_a_prefix_ending_in_a_star(limits, name, allowed):
    assert prompt_allowed(limits, name) is allowed


def test_limits_are_kept_sorted_and_distinct():
    assert normalize_prompt_limits(["support.*", "a.b", "support.*"]) == ("a.b", "support.*")
    assert normalize_prompt_limits(None) is None


@pytest.mark.parametrize(
    "prompts", [[], "support.*", ["*"], ["Support.*"], ["a*b"], [3], ["x" * 130], ["a"] * 201]
)
def test_anything_but_a_list_of_names_and_prefixes_is_refused(prompts):
    with pytest.raises(ValidationFailed):
        normalize_prompt_limits(prompts)
