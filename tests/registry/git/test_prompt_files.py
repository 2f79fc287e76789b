"""The prompt file format: what import reads and export writes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.git.prompt_files import PromptFile, PromptFileError, dump_prompt_file, parse_prompt_file

# Any text, with more than its share of new lines, other line breaks, tabs and spaces.
texts = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\n\r\x85\u2028\t "), max_size=200
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,40}", fullmatch=True)


@st.composite
def prompt_files(draw):
    kind = draw(st.sampled_from(["text", "chat"]))
    messages = draw(
        st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": texts}),
            min_size=1,
            max_size=3,
        )
    )
    return PromptFile(
        path="p.yaml",
        name=draw(names),
        kind=kind,
        template=draw(texts.filter(bool)) if kind == "text" else None,
        messages=messages if kind == "chat" else None,
        model=draw(st.sampled_from(["", "gpt-4o-mini", "claude-3-5-sonnet"])),
        config=draw(st.dictionaries(texts, json_values, max_size=4)),
        description=draw(st.none() | texts),
        tags=draw(st.none() | st.lists(names, max_size=3)),
        owners=draw(st.none() | st.lists(names | names.map("group:{}".format), max_size=3)),
    )


@given(prompt_files())
def test_a_written_prompt_file_reads_back_as_the_same_prompt(prompt_file):
    assert parse_prompt_file("p.yaml", dump_prompt_file(prompt_file)) == prompt_file


def test_multi_line_templates_are_written_as_blocks_that_read_like_the_prompt():
    prompt_file = PromptFile(path="p.yaml", name="a", kind="text", template="Hello {{name}},\nhow are you?\n")

    written = dump_prompt_file(prompt_file)

    assert "template: |\n  Hello {{name}},\n  how are you?\n" in written


def test_kind_is_guessed_from_messages_and_config_defaults_to_empty():
    parsed = parse_prompt_file("p.yaml", "name: a\nmessages:\n  - {role: user, content: hi}\n")

    assert (parsed.kind, parsed.config, parsed.owners) == ("chat", {}, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("template: hi\n", "'name' is missing"),
        ("name: a\ntemplate: hi\ntemplte: typo\n", "unknown keys templte"),
        ("name: a\nkind: audio\ntemplate: hi\n", "'kind' must be text or chat"),
        ("name: a\ntemplate: hi\nconfig: [1, 2]\n", "'config' must be a mapping"),
        ("name: a\ntemplate: hi\nconfig: {released: 2024-05-01}\n", "'config.released' holds a date"),
        ("name: a\ntemplate: hi\nconfig: {t: .nan}\n", "'config.t' holds nan"),
        ("name: a\ntemplate: hi\nconfig: {1: one}\n", "has a key 1 that is not a string"),
        ("name: a\ntemplate: 12\n", "'template' must be a string"),
        ("name: a\ntemplate: hi\nowners: alice\n", "'owners' must be a list of strings"),
        ("name: a\nmessages: {role: user}\n", "'messages' must be a list"),
        ("name: a\ntemplate: &x hi\ndescription: *x\n", "aliases (*name) are not allowed"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(text, problem):
    with pytest.raises(PromptFileError) as refused:
        parse_prompt_file("prompts/a.yaml", text)

    assert str(refused.value).startswith("prompts/a.yaml: ")
    assert problem in str(refused.value)


def test_a_billion_laughs_file_is_refused_before_it_is_expanded():
    lines = ["name: a", "template: hi", 'x0: &x0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"x{i}: &x{i} [*x{i - 1},*x{i - 1},*x{i - 1},*x{i - 1},*x{i - 1},*x{i - 1}]" for i in range(1, 12)
    ]

    with pytest.raises(PromptFileError, match="aliases"):
        parse_prompt_file("bomb.yaml", "\n".join(lines))


def test_a_file_over_a_megabyte_is_refused_unread():
    with pytest.raises(PromptFileError, match="larger than 1024 KB"):
        parse_prompt_file("big.yaml", "name: a\ntemplate: " + "x" * (1024 * 1024))
