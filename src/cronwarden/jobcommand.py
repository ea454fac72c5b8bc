"""A cron job's command, as ``import-crontab`` reads it: where cron ends it at an
unescaped ``%``, whether it needs a shell to run under ``cronwarden run``, the
line that runs it so, and the monitor name it goes by (its main program, past
``cd``, ``nice``, ``flock``, ``sh -c`` and the like). Pure functions of the text.
"""

from __future__ import annotations

import os
import re
import shlex

MAX_SLUG = 48
DEFAULT_SHELL = "/bin/sh"
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_CHARS = frozenset("|&;<>()`\n")
# Words that only mean something to a shell: a command starting with one needs a shell.
_SHELL_WORDS = frozenset({
    "cd", ".", "source", "export", "exec", "eval", "set", "unset", "ulimit", "umask", "if", "for", "while",
    "until", "case", "!", "{", "[[", "function", "alias", "trap", "wait", "shift", "readonly", "local",
    "let", "declare", "typeset", "builtin", "command", "exit", "return", "read", "type", "hash", "times",
})
# Programs that run another program: (options that take a value, positional words before the program).
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}), 0),
    "chrt": (frozenset(), 1),
    "taskset": (frozenset(), 1),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "flock": (frozenset({"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "setlock": (frozenset(), 1),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir"}), 0),
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "--user", "--group"}), 0),
    "runuser": (frozenset({"-u", "-g", "-G", "-s", "--user", "--group", "--shell"}), 0),
    "su": (frozenset({"-s", "-g", "-G", "--shell", "--group"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "systemd-cat": (frozenset({"-t", "--identifier", "-p", "--priority"}), 0),
    "nohup": (frozenset(), 0), "time": (frozenset(), 0), "chronic": (frozenset(), 0),
    "cronic": (frozenset(), 0), "setsid": (frozenset(), 0), "run-one": (frozenset(), 0),
    "nocache": (frozenset(), 0), "unbuffer": (frozenset(), 0), "exec": (frozenset(), 0),
    "command": (frozenset(), 0),
}
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"})
_INTERPRETER = re.compile(r"(python|pypy|perl|ruby|php|lua)[0-9.]*|node|nodejs|deno|bun|rscript|tclsh")
# Commands that set the scene rather than do the job: a name comes from them only when nothing else is there.
_NOISE = frozenset({
    "cd", "test", "[", "[[", "true", "false", ":", "export", "set", "unset", "umask", "ulimit", "source",
    ".", "sleep", "echo", "printf", "trap", "wait", "exit", "logger", "tee", "mail", "mailx", "cat", "date",
    "mkdir", "touch", "rm", "$",
})
# Shell words that can start a simple command without being its program.
_RESERVED = frozenset({"{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until"})
_EXTENSIONS = (".sh", ".bash", ".py", ".pl", ".rb", ".php", ".js", ".mjs", ".ts", ".jar", ".lua", ".r")


# --------------------------------------------------------------------------
# Cron's command text: % and \%.


def split_percent(command: str) -> tuple[str, str]:
    """(command, stdin part) as cron splits them: at the first ``%`` not escaped by ``\\``.

    The stdin part keeps its leading ``%``; both parts are returned as written
    (escapes not undone), so ``head + tail == command``. Cron's rule: a ``\\``
    takes the next character with it, so ``\\\\%`` still ends the command."""
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return command[:i], command[i:]
    return command, ""


def unescape_percent(head: str) -> str:
    """What cron hands the shell for the command part `head`: each ``\\%`` becomes ``%``."""
    out: list[str] = []
    escaped = False
    for ch in head:
        if escaped:
            if ch != "%":
                out.append("\\")
            escaped = False
        elif ch == "\\":
            escaped = True
            continue
        out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


# --------------------------------------------------------------------------
# Commands: do they need a shell, what are they called, how are they wrapped.


def needs_shell(command: str) -> bool:
    """True when `command` (as the shell gets it) is more than one simple command with arguments."""
    if any(ch in _SHELL_CHARS for ch in command):
        return True
    try:
        words = shlex.split(command)
    except ValueError:
        return True
    return not words or bool(_ASSIGNMENT.match(words[0])) or words[0] in _SHELL_WORDS


def wrap_command(raw: str, name: str, shell: str = DEFAULT_SHELL, program: str = "cronwarden") -> str:
    """The crontab command text that runs `raw` (as written in a crontab) under ``cronwarden run``."""
    head, tail = split_percent(raw)
    prefix = f"{shlex.quote(program)} run {name} --"
    if needs_shell(unescape_percent(head)):
        return f"{prefix} {shlex.quote(shell)} -c {shlex.quote(head)}{tail}"
    return f"{prefix} {head}{tail}"


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return command.split()


def _simple_commands(command: str) -> list[list[str]]:
    """The words of each simple command in `command`, redirections left out."""
    commands: list[list[str]] = [[]]
    tokens = _tokens(command)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token and all(ch in "();|&<>" for ch in token):
            if "<" in token or ">" in token:  # a redirection: drop its target and a leading fd number
                if commands[-1] and commands[-1][-1].isdigit():
                    commands[-1].pop()
                i += 2
                continue
            if commands[-1]:
                commands.append([])
        else:
            commands[-1].append(token)
        i += 1
    return [words for words in commands if words]


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/")) or path
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return base


def _skip_options(words: list[str], i: int, with_value: frozenset[str]) -> int:
    while i < len(words) and words[i].startswith("-") and words[i] != "-":
        if words[i] == "--":
            return i + 1
        i += 2 if words[i] in with_value else 1
    return i


def _name_of(words: list[str], depth: int) -> str | None:
    """The name a simple command's job goes by; None for a scene-setting command (``cd``, ``test``)."""
    i = 0
    while i < len(words):
        if _ASSIGNMENT.match(words[i]) or words[i] in _RESERVED:
            i += 1
            continue
        prog = os.path.basename(words[i]).lower()
        rest = words[i + 1:]
        if prog in _SHELLS or prog in ("su", "runuser", "flock"):
            for j, word in enumerate(rest):  # -c STRING: the job is inside the string
                if re.fullmatch(r"-[a-z]*c", word) and j + 1 < len(rest) and depth < 3:
                    return program_name(rest[j + 1], depth + 1)
        if prog in _WRAPPERS:
            with_value, positionals = _WRAPPERS[prog]
            i = _skip_options(words, i + 1, with_value) + positionals
            continue
        if prog in _NOISE:
            return None
        if prog in _SHELLS or _INTERPRETER.fullmatch(prog):
            j = 0
            while j < len(rest) and rest[j].startswith("-") and rest[j] != "-":
                if rest[j] == "-m" and j + 1 < len(rest):
                    return rest[j + 1]
                if rest[j] in ("-c", "-e", "-r", "-E"):  # program text on the command line
                    return prog
                j += 2 if rest[j] in ("-W", "-X", "-f") else 1
            return _stem(rest[j]) if j < len(rest) else prog
        if prog == "run-parts":
            targets = [w for w in rest if not w.startswith("-")]
            return _stem(targets[-1]) if targets else prog
        if prog == "java" and "-jar" in rest[:-1]:
            return _stem(rest[rest.index("-jar") + 1])
        return _stem(words[i])
    return None


def slugify(text: str) -> str:
    """A monitor name (``[a-z0-9][a-z0-9_.-]*``) made from `text`; ``job`` when nothing is left."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-_.")
    slug = slug[:MAX_SLUG].rstrip("-_.")
    return slug or "job"


def program_name(command: str, depth: int = 0) -> str:
    """A monitor name for `command` (shell text): its main program, past ``cd``, ``nice``, ``flock``,
    ``env``, ``VAR=value``, ``sh -c`` and the like; a script's name when an interpreter runs one."""
    commands = _simple_commands(command)
    for words in commands:
        name = _name_of(words, depth)
        if name:
            return slugify(name)
    for words in commands:  # nothing but scene-setting commands: name it after the first program
        for word in words:
            if not _ASSIGNMENT.match(word) and word not in _RESERVED:
                return slugify(_stem(word))
    return "job"


def unique_name(base: str, used: set[str]) -> str:
    """`base`, or `base`-2, -3... whichever is not in `used`; added to `used`."""
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}-{n}"
    used.add(name)
    return name
