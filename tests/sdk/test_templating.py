import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptramp import MissingVariables
from promptramp.templating import render, variables_of

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
SPACES = st.sampled_from(["", " ", "  ", "\t", "\n"])


def test_variables_are_listed_once_in_order_of_first_appearance() -> None:
    texts = ["Hi {{name}}, {{ topic }} and {{name}} again", "{{_x1}} {{topic}} {{ 1bad }} {{a-b}}"]

    assert variables_of(texts) == ["name", "topic", "_x1"]


def test_text_is_rendered_with_str_of_each_value() -> None:
    rendered, unused = render(
        "{{n}} items at {{ price }} ({{flag}})",
        None,
        ["n", "price", "flag"],
        {"n": 3, "price": 1.5, "flag": None},
    )

    assert rendered == "3 items at 1.5 (None)"
    assert unused == []


def test_missing_variables_raise_an_error_naming_each_of_them() -> None:
    with pytest.raises(MissingVariables) as raised:
        render("{{a}} {{b}} {{c}}", None, ["a", "b", "c"], {"b": 1})

    assert raised.value.names == ["a", "c"]
    assert str(raised.value) == "missing variables: a, c"


def test_unknown_variables_are_ignored_and_listed_sorted() -> None:
    rendered, unused = render("{{a}}", None, ["a"], {"zeta": 1, "a": "A", "beta": 2})

    assert rendered == "A"
    assert unused == ["beta", "zeta"]


def test_chat_renders_each_content_and_leaves_roles_alone() -> None:
    messages = [
        {"role": "system", "content": "You help {{team}}."},
        {"role": "{{team}}", "content": "{{question}}", "name": "alice"},
    ]

    rendered, unused = render(None, messages, ["team", "question"], {"team": "ops", "question": "Why?"})

    assert rendered == [
        {"role": "system", "content": "You help ops."},
        {"role": "{{team}}", "content": "Why?", "name": "alice"},
    ]
    assert messages[0]["content"] == "You help {{team}}."


def test_inserted_values_are_not_rendered_again() -> None:
    rendered, _ = render("{{a}} {{b}}", None, ["a", "b"], {"a": "{{b}}", "b": "B"})

    assert rendered == "{{b}} B"


@given(name=NAMES, before=SPACES, after=SPACES, value=st.text())
def test_spaces_inside_braces_do_not_matter(name: str, before: str, after: str, value: str) -> None:
    template = f"<{{{{{before}{name}{after}}}}}>"

    assert variables_of([template]) == [name]
    assert render(template, None, [name], {name: value}) == (f"<{value}>", [])


@given(
    text=st.text().filter(lambda text: "{{" not in text),
    values=st.dictionaries(NAMES, st.integers()),
)
def test_text_without_placeholders_renders_unchanged(text: str, values: dict[str, int]) -> None:
    assert render(text, None, variables_of([text]), values) == (text, sorted(values))
