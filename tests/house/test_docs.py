"""The docs tell the truth about the house: every command, entry point and link they name exists.

README.md and docs/**/*.md are read as text (nothing runs): each ``shapflow <command> [<subcommand>]`` in a
code block or backticks must be a visible command of the Click tree, each ``mlflow run . -e <entry>`` an
entry point of MLproject, each relative link an existing path; the README stays a front door (<= 200
lines) whose test command is the one CI runs. Each checker returns its problems (file and text), so the
self-tests at the bottom can show that it catches a broken copy.
"""

import os
import re
import shutil
from pathlib import Path

import click
import pytest
import yaml

from shapflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
SHAPFLOW_COMMAND = re.compile(r"(?<![\w./-])shapflow[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?")
MLFLOW_ENTRY = re.compile(r"mlflow[ \t]+run[ \t]+\S+[ \t]+(?:-e|--entry-point)[ \t]+([\w-]+)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def doc_files(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def code_snippets(text: str) -> list[str]:
    """The text of every fenced code block and every inline code span (spans may wrap lines)."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    return blocks + [" ".join(span.split()) for span in INLINE.findall(prose)]


def _commands(group: click.Group) -> dict[str, click.Command]:
    """Every command of ``group`` as Click resolves it (``shapflow``'s sub-groups are imported when named)."""
    with click.Context(group) as ctx:
        return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}


def _visible(group: click.Group) -> dict[str, click.Command]:
    return {name: cmd for name, cmd in _commands(group).items() if not cmd.hidden}


def command_problems(root: Path, cli: click.Group = main) -> list[str]:
    """Every ``shapflow <command> [<subcommand>]`` named in code that the CLI does not have (or hides)."""
    problems = []
    for path in doc_files(root):
        for snippet in code_snippets(path.read_text()):
            for match in SHAPFLOW_COMMAND.finditer(snippet):
                name, sub = match.groups()
                where = f"{path.relative_to(root)}: `{match.group(0)}`"
                command = _commands(cli).get(name)
                if command is None:
                    problems.append(f"{where}: no command {name!r} (shapflow has {', '.join(sorted(_visible(cli)))})")
                elif command.hidden:
                    problems.append(f"{where}: {name!r} is a hidden alias; document the command that replaced it")
                elif isinstance(command, click.Group) and sub is not None and sub not in _visible(command):
                    problems.append(f"{where}: no subcommand {sub!r} of {name!r} "
                                    f"(it has {', '.join(sorted(_visible(command)))})")
    return problems


def entry_point_problems(root: Path) -> list[str]:
    """Every ``mlflow run <uri> -e <entry>`` named in code whose entry point MLproject lacks."""
    entries = set(yaml.safe_load((root / "MLproject").read_text())["entry_points"])
    problems = []
    for path in doc_files(root):
        for snippet in code_snippets(path.read_text()):
            for match in MLFLOW_ENTRY.finditer(snippet):
                if match.group(1) not in entries:
                    problems.append(f"{path.relative_to(root)}: `{match.group(0)}`: no entry point "
                                    f"{match.group(1)!r} in MLproject (it has {', '.join(sorted(entries))})")
    return problems


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def link_problems(root: Path) -> list[str]:
    """Every relative Markdown link (outside code) whose target, or its #anchor in a page, does not exist."""
    problems = []
    for path in doc_files(root):
        prose = FENCE.sub("", path.read_text())
        prose = INLINE.sub("", prose)
        for target in LINK.findall(prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # a URL (http:, mailto:)
            file, _, anchor = target.partition("#")
            resolved = Path(os.path.normpath(path.parent / file)) if file else path
            relative = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
            if not resolved.exists():
                problems.append(f"{path.relative_to(root)}: link ({target}) -> {relative} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{path.relative_to(root)}: link ({target}) -> no heading #{anchor} in {relative}")
    return problems


def script_problems(root: Path) -> list[str]:
    """Every ``bash <script>`` in the README's code that names a script the repository lacks."""
    problems = []
    for snippet in code_snippets((root / "README.md").read_text()):
        for script in re.findall(r"(?<![\w-])bash[ \t]+([\w./-]+)", snippet):
            if not (root / script).is_file():
                problems.append(f"README.md: `bash {script}`: {script} does not exist")
    return problems


def readme_problems(root: Path) -> list[str]:
    """The README's length, when it is over the front door's limit."""
    lines = len((root / "README.md").read_text().splitlines())
    return [f"README.md has {lines} lines: move detail into docs/ (at most {README_MAX_LINES})"] * (
        lines > README_MAX_LINES)


def readme_test_command(root: Path) -> str:
    """The README's test command: the one line of its code blocks that runs pytest."""
    readme = (root / "README.md").read_text()
    lines = [line.strip() for block in FENCE.finditer(readme) for line in block.group(0).splitlines()
             if "-m pytest" in line and not line.strip().startswith("#")]
    assert len(lines) == 1, f"README.md: expected one test command (a line running `-m pytest`), found {lines}"
    return lines[0]


def ci_test_command(root: Path) -> str:
    """What .ci/run runs to install and test, joined as one command: its install line && its pytest line."""
    lines = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    installs = [line for line in lines if line.startswith("bash .ci/install")]
    tests = [line for line in lines if "-m pytest" in line]
    assert len(installs) == 1 and len(tests) == 1, f".ci/run: expected one install and one pytest line: {lines}"
    return f"{installs[0]} && {tests[0]}"


def test_every_shapflow_command_in_the_docs_exists():
    assert command_problems(ROOT) == []


def test_every_mlflow_entry_point_in_the_docs_exists():
    assert entry_point_problems(ROOT) == []


def test_every_relative_link_in_the_docs_exists():
    assert link_problems(ROOT) == []


def test_every_script_the_readme_runs_exists():
    assert script_problems(ROOT) == []


def test_readme_is_a_front_door():
    assert readme_problems(ROOT) == []


def test_readme_test_command_is_what_ci_runs():
    readme = readme_test_command(ROOT)
    assert readme.endswith(".venv/bin/python -m pytest"), readme
    assert readme == ci_test_command(ROOT)


# Self-tests: each checker catches a broken copy of the docs, naming the file and the text.


@pytest.fixture
def copy(tmp_path):
    """The repository in tmp_path: the docs, MLproject and .ci copied (to be broken), the rest linked."""
    for entry in ROOT.iterdir():
        if entry.name in ("README.md", "MLproject"):
            shutil.copy(entry, tmp_path / entry.name)
        elif entry.name in ("docs", ".ci"):
            shutil.copytree(entry, tmp_path / entry.name)
        elif entry.name not in (".git", ".venv"):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_checkers_pass_on_the_copy(copy):
    assert not (command_problems(copy) or entry_point_problems(copy) or link_problems(copy) or script_problems(copy)
                or readme_problems(copy))
    assert readme_test_command(copy) == ci_test_command(copy)


@pytest.mark.parametrize(("text", "expected"), [
    ("\n```bash\nshapflow frobnicate --use-case digits\n```\n", "no command 'frobnicate'"),
    ("\nRun `shapflow models delete digits-full`.\n", "no subcommand 'delete' of 'models'"),
])
def test_a_missing_command_fails(copy, text, expected):
    _append(copy / "docs" / "method.md", text)
    problems = command_problems(copy)
    assert len(problems) == 1 and problems[0].startswith("docs/method.md: `shapflow ") and expected in problems[0]


def test_a_documented_hidden_command_fails(copy):
    """A hidden command (an alias kept for a while) is not to be taught: the docs name what replaced it."""
    cli = click.Group("shapflow", commands=[click.Command("run"), click.Command("old", hidden=True)])
    _append(copy / "docs" / "method.md", "\nRun `shapflow old --method loo`.\n")
    problems = command_problems(copy, cli)
    assert problems and all("hidden alias" in p or "no command" in p for p in problems)
    assert any(p.startswith("docs/method.md: `shapflow old") and "hidden alias" in p for p in problems)


def test_a_missing_entry_point_fails(copy):
    _append(copy / "README.md", "\n```bash\nmlflow run . -e estimate -P use_case=digits\n```\n")
    problems = entry_point_problems(copy)
    assert len(problems) == 1 and problems[0].startswith("README.md: `mlflow run . -e estimate`")


@pytest.mark.parametrize(("link", "expected"), [
    ("results/2020-01-01-kernels.md#cpu", "docs/results/2020-01-01-kernels.md does not exist"),
    ("method.md#the-store", "no heading #the-store in docs/method.md"),
    ("#no-such-section", "no heading #no-such-section in docs/kernels.md"),
])
def test_a_broken_link_fails(copy, link, expected):
    _append(copy / "docs" / "kernels.md", f"\nSee [there]({link}).\n")
    problems = link_problems(copy)
    assert len(problems) == 1 and problems[0].startswith(f"docs/kernels.md: link ({link})") and expected in problems[0]


def test_a_missing_script_fails(copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("bash install.sh", "bash setup.sh"))
    problems = script_problems(copy)
    assert len(problems) == 1 and problems[0].startswith("README.md: `bash setup.sh`")


def test_a_long_readme_fails(copy):
    assert readme_problems(copy) == []
    _append(copy / "README.md", "more\n" * README_MAX_LINES)
    assert readme_problems(copy) and "README.md has" in readme_problems(copy)[0]


@pytest.mark.parametrize("changed", ["README.md", ".ci/run"])
def test_a_readme_test_command_unlike_ci_fails(copy, changed):
    path = copy / changed
    path.write_text(path.read_text().replace(".venv/bin/python -m pytest", ".venv/bin/python -m pytest -x"))
    assert readme_test_command(copy) != ci_test_command(copy)
