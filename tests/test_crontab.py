"""`cronwarden import-crontab`: parsing, naming, wrapping, and that the output is usable as is."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from cronwarden import crontab, jobcommand
from cronwarden.config import parse_config
from cronwarden.schedule import validate_cron

USER_CRONTAB = textwrap.dedent(r"""
    # m h dom mon dow command
    MAILTO=ops@example.com
    PATH=/usr/local/bin:/usr/bin:/bin

    */5 * * * * /usr/local/bin/sync-queue && curl -fsS http://localhost:8470/ping/queue-worker >/dev/null
    0 2 * * *   /usr/local/bin/backup --full   # nightly
    0 1 * * *   /usr/local/bin/backup --db
    CRON_TZ=Europe/Riga
    30 3 * * 1-5 cd /srv/app && nice -n 10 flock -n /tmp/report.lock python3 manage.py report
    @daily  /usr/bin/env FOO=1 python3 -m app.tasks.cleanup
    @midnight /opt/jobs/rotate.sh
    @reboot /usr/local/bin/start-thing
    0 4 * * * mysqldump --all | gzip > /var/backups/db-$(date +\%F).sql.gz
    15 * * * * mail -s "hourly report" ops@example.com%Hello,%the report.%
    0 0 * * * echo 'it'"'"'s' "a \"b\"" > /tmp/x 2>&1
    61 * * * * /bin/true
    this is not a cron line
    """).lstrip()

SYSTEM_CRONTAB = textwrap.dedent("""
    SHELL=/bin/sh
    PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
    # Example of job definition:
    17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly
    25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
    47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }
    */10 * * * * www-data php /var/www/artisan schedule:run
    @hourly backup /usr/local/bin/backup
    0 5 * * * /usr/local/bin/no-user-field
    """).lstrip()

MINIMAL = "server:\n  listen: 127.0.0.1:0\n  database: ./cw.db\n"


def cron_split(command: str) -> tuple[str, str | None]:
    """What cron does with a command (written independently of crontab.py, after Vixie cron's
    do_command.c): the text before the first unescaped %, with each \\% made %, for the shell;
    the text after it (raw) for stdin, None when there is no %."""
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == "%":
            return "".join(out), command[i + 1:]
        else:
            out.append(ch)
    return "".join(out), None


def job_command(line: str, system: bool) -> str:
    """The command part of a crontab job line."""
    fields = 1 if line.startswith("@") else 5
    return line.split(None, fields + (1 if system else 0))[-1]


def converted_pairs(result: crontab.Converted, original: str, system: bool) -> list[tuple[str, str, str]]:
    """(monitor name, original command, rewritten command) for each converted job."""
    lines = original.splitlines()
    pairs = []
    for monitor in result.monitors:
        number = int(monitor.source.rsplit(":", 1)[1])
        [new] = [line for line in result.lines if f" run {monitor.name} -- " in line]
        pairs.append((monitor.name, job_command(lines[number - 1], system), job_command(new, system)))
    return pairs


# --------------------------------------------------------------------------
# Whole files.


def test_a_user_crontab_becomes_monitors_and_wrapped_lines(tmp_path: Path) -> None:
    result = crontab.convert(USER_CRONTAB, label="crontab -l", default_tz="America/New_York")
    names = [m.name for m in result.monitors]
    assert names == ["sync-queue", "backup", "backup-2", "manage", "app.tasks.cleanup", "rotate", "mysqldump",
                     "mail", "echo"]
    by_name = {m.name: m for m in result.monitors}
    assert by_name["backup"].cron == "0 2 * * *" and by_name["backup"].grace == "30m"
    assert by_name["backup"].timezone == "America/New_York"  # no CRON_TZ yet: the machine's zone
    assert by_name["sync-queue"].grace == "5m"
    assert by_name["mail"].grace == "15m"
    assert by_name["manage"].timezone == "Europe/Riga"  # after CRON_TZ=
    assert by_name["app.tasks.cleanup"].cron == "@daily"
    assert by_name["rotate"].cron == "@daily"  # @midnight
    assert by_name["sync-queue"].source == "crontab -l:5"
    assert result.reboot == 1 and result.unparsed == 2

    # Comments, blank lines and environment lines stay where they were; each job line is
    # rewritten in place, its schedule (and spacing) untouched.
    without_notes = [line for line in result.lines if not line.startswith("# cronwarden:")]
    original = USER_CRONTAB.splitlines()
    assert len(without_notes) == len(original) and len(result.lines) == len(original) + 3
    rewritten = 0
    for old, new in zip(original, without_notes):
        if "cronwarden run" in new:
            schedule = new.split("cronwarden run")[0]
            assert old.startswith(schedule) and schedule.strip()
            rewritten += 1
        else:
            assert new == old
    assert rewritten == 9
    assert result.lines[:4] == ["# m h dom mon dow command", "MAILTO=ops@example.com",
                                "PATH=/usr/local/bin:/usr/bin:/bin", ""]
    assert "CRON_TZ=Europe/Riga" in result.lines

    lines = result.lines
    assert lines[lines.index("@reboot /usr/local/bin/start-thing") - 1].startswith(
        "# cronwarden: @reboot left as is: it runs once per boot")
    assert lines[lines.index("61 * * * * /bin/true") - 1] == (
        "# cronwarden: could not parse (bad cron expression '61 * * * *': minute 61 out of range 0-59); "
        "left unchanged")
    assert lines[lines.index("this is not a cron line") - 1] == (
        "# cronwarden: could not parse (bad cron expression 'this is not a cron': minute 'this' is not a number); "
        "left unchanged")

    # Simple commands are kept as written; shell syntax goes to sh -c, quoted.
    assert "0 1 * * *   cronwarden run backup-2 -- /usr/local/bin/backup --db" in lines
    assert ("*/5 * * * * cronwarden run sync-queue -- /bin/sh -c '/usr/local/bin/sync-queue && curl -fsS "
            "http://localhost:8470/ping/queue-worker >/dev/null'") in lines
    assert "15 * * * * cronwarden run mail -- mail -s \"hourly report\" ops@example.com%Hello,%the report.%" in lines

    # The YAML loads as a cronwarden config, with what was asked for.
    config = parse_config(MINIMAL + crontab.render_yaml(result.monitors), tmp_path / "cw.yaml")
    assert list(config.monitors) == names
    assert config.monitors["manage"].cron == "30 3 * * 1-5"
    assert config.monitors["manage"].timezone == "Europe/Riga"
    assert config.monitors["manage"].grace == 1800
    assert config.monitors["sync-queue"].grace == 300


def test_rewritten_commands_round_trip_to_the_original() -> None:
    result = crontab.convert(USER_CRONTAB)
    pairs = converted_pairs(result, USER_CRONTAB, system=False)
    assert len(pairs) == 9
    shells = 0
    for name, old, new in pairs:
        old_cmd, old_stdin = cron_split(old)
        new_cmd, new_stdin = cron_split(new)
        assert new_stdin == old_stdin, (old, new)
        words = shlex.split(new_cmd)
        assert words[:4] == ["cronwarden", "run", name, "--"], new
        if words[4:6] == ["/bin/sh", "-c"]:
            assert words[6:] == [old_cmd]  # exactly the text cron gave the shell before
            shells += 1
        else:
            assert words[4:] == shlex.split(old_cmd)
    assert shells == 4


def test_rewritten_commands_do_what_the_originals_did(tmp_path: Path) -> None:
    """Run both through /bin/sh as cron would, with a stand-in `cronwarden run` that just execs."""
    stub = tmp_path / "cw"
    stub.write_text('#!/bin/sh\n[ "$1" = run ] && [ "$3" = -- ] || exit 99\nshift 3\nexec "$@"\n')
    stub.chmod(0o755)
    jobs = [
        r"printf '\%s|' \"a b\" 'c'\''d' | tr a-z A-Z",
        r"date +\%Y-\%m | wc -c",
        "cat -n%line one%line two",
        r"tr a-z A-Z%it's 100\% here",
        "echo \"x  y\" > out.txt && cat out.txt; echo $((1+2))",
        "FOO='bar baz' printenv FOO",
        "sh -c 'echo $0 $1' zero one",
        r"echo it\'s \"quoted\" \\ back\\slash",
        "ls missing-file 2>&1 || echo failed:$?",
    ]
    text = "".join(f"* * * * * {job}\n" for job in jobs)
    result = crontab.convert(text, program=str(stub))
    assert len(result.monitors) == len(jobs)
    for name, old, new in converted_pairs(result, text, system=False):
        outputs = []
        for command in (old, new):
            shell_cmd, stdin = cron_split(command)
            data = None if stdin is None else stdin.replace("%", "\n")
            proc = subprocess.run(["/bin/sh", "-c", shell_cmd], input=data or "", capture_output=True, text=True,
                                  cwd=tmp_path, timeout=10)
            outputs.append((proc.returncode, proc.stdout, proc.stderr))
        assert outputs[0] == outputs[1], (old, new)
        assert outputs[0][0] == 0 and outputs[0][1], old


def test_a_system_crontab_keeps_its_user_field(tmp_path: Path) -> None:
    result = crontab.convert(SYSTEM_CRONTAB, label="/etc/crontab", system=True)
    assert [(m.name, m.user, m.cron) for m in result.monitors] == [
        ("cron.hourly", "root", "17 * * * *"),
        ("cron.daily", "root", "25 6 * * *"),
        ("cron.weekly", "root", "47 6 * * 7"),
        ("artisan", "www-data", "*/10 * * * *"),
        ("backup", "backup", "@hourly"),
    ]
    assert result.unparsed == 1  # no user field
    assert "17 *\t* * *\troot\tcronwarden run cron.hourly -- /bin/sh -c 'cd / && run-parts --report " \
           "/etc/cron.hourly'" in result.lines
    assert "*/10 * * * * www-data cronwarden run artisan -- php /var/www/artisan schedule:run" in result.lines
    assert "@hourly backup cronwarden run backup -- /usr/local/bin/backup" in result.lines
    for name, old, new in converted_pairs(result, SYSTEM_CRONTAB, system=True):
        words = shlex.split(cron_split(new)[0])
        assert words[:4] == ["cronwarden", "run", name, "--"]
        assert words[4:] in (shlex.split(old), ["/bin/sh", "-c", old])
    text = crontab.render_yaml(result.monitors)
    assert "    # /etc/crontab:4 (root): cd / && run-parts --report /etc/cron.hourly\n" in text
    parse_config(MINIMAL + text, tmp_path / "cw.yaml")


def test_shell_timezones_prefix_and_names_across_files(tmp_path: Path) -> None:
    used: set[str] = set()
    first = crontab.convert("SHELL=/bin/bash\nTZ=Asia/Tokyo\n0 * * * * a | b\n", prefix="web1", used=used)
    second = crontab.convert("CRON_TZ=Mars/Olympus\n0 * * * * a\nCRON_TZ=\n5 * * * * /x/a.sh\n",
                             prefix="web1-", used=used)
    assert first.lines[2] == "0 * * * * cronwarden run web1-a -- /bin/bash -c 'a | b'"
    assert first.monitors[0].timezone == "Asia/Tokyo"
    assert second.lines[1].startswith("# cronwarden: could not parse (unknown time zone 'Mars/Olympus' in CRON_TZ)")
    assert [m.name for m in second.monitors] == ["web1-a-2"]
    assert second.monitors[0].timezone is None
    files = [first, second]
    out = crontab.render(files)
    yaml_part, crontab_part = out.split(crontab.SEPARATOR + "\n")
    config = parse_config(MINIMAL + yaml_part, tmp_path / "cw.yaml")
    assert set(config.monitors) == {"web1-a", "web1-a-2"}
    assert crontab_part.startswith("# ==> crontab <==\nSHELL=/bin/bash\n")
    assert crontab.render(files, crontab_part=False) == yaml_part
    assert crontab.render(files, yaml_part=False) == crontab_part


def test_converting_twice_changes_nothing() -> None:
    once = crontab.convert(USER_CRONTAB)
    text = "\n".join(once.lines) + "\n"
    twice = crontab.convert(text)
    assert twice.lines == once.lines
    assert twice.monitors == [] and twice.already == len(once.monitors)
    # ...and a name already in use is not handed out again.
    third = crontab.convert(text + "0 3 * * * /usr/local/bin/backup\n")
    assert [m.name for m in third.monitors] == ["backup-3"]


def test_yaml_quotes_names_yaml_would_misread(tmp_path: Path) -> None:
    result = crontab.convert("0 * * * * /usr/bin/on\n0 * * * * /opt/1.5 --x\n0 * * * * /usr/bin/null\n")
    text = crontab.render_yaml(result.monitors)
    assert '  "on":\n' in text and '  "1.5":\n' in text and '  "null":\n' in text
    assert list(parse_config(MINIMAL + text, tmp_path / "cw.yaml").monitors) == ["on", "1.5", "null"]
    assert parse_config(MINIMAL + crontab.render_yaml([]), tmp_path / "cw.yaml").monitors == {}


# --------------------------------------------------------------------------
# Pure parts.


def test_split_percent_follows_cron() -> None:
    assert jobcommand.split_percent("echo a") == ("echo a", "")
    assert jobcommand.split_percent("cat%a%b") == ("cat", "%a%b")
    assert jobcommand.split_percent(r"date +\%F%in") == (r"date +\%F", "%in")
    assert jobcommand.split_percent("echo \\\\%in") == ("echo \\\\", "%in")  # \\ then an unescaped %
    assert jobcommand.unescape_percent(r"date +\%F \n \\") == r"date +%F \n \\"
    for command in (r"a\%b%c", "x%", r"\\%y", "plain", "tail\\"):
        head, tail = jobcommand.split_percent(command)
        assert head + tail == command
        assert (jobcommand.unescape_percent(head), tail[1:] if tail else None) == cron_split(command)


@pytest.mark.parametrize("command, shell", [
    ("/usr/bin/backup --full", False),
    ("php artisan 'a b' \"c\" $HOME ~/x *.log", False),
    ("a | b", True), ("a > /dev/null", True), ("a 2>&1", True), ("a && b", True), ("a; b", True),
    ("a $(date)", True), ("a `date`", True), ("FOO=1 a", True), ("cd /srv", True), ("exec a", True),
    ("echo 'unbalanced", True), ("if true; then a; fi", True),
])
def test_needs_shell(command: str, shell: bool) -> None:
    assert jobcommand.needs_shell(command) is shell


@pytest.mark.parametrize("command, name", [
    ("/usr/local/bin/backup.sh --full", "backup"),
    ("cd /srv/app && ./bin/Sync_Users", "sync_users"),
    ("nice -n 10 ionice -c 3 /opt/x/reindex", "reindex"),
    ("flock -n /tmp/x.lock /usr/bin/rsync -a a b", "rsync"),
    ("flock /tmp/x.lock -c 'cd /x && ./purge'", "purge"),
    ("/usr/bin/env -u X FOO=1 BAR=2 python3 /opt/jobs/report.py --daily", "report"),
    ("timeout 1h sudo -u www-data php /var/www/artisan schedule:run", "artisan"),
    ("sh -c 'test -f /x || exec /usr/sbin/logrotate /etc/logrotate.conf'", "logrotate"),
    ("bash -lc \"source ~/.profile; run-parts /etc/cron.daily\"", "cron.daily"),
    ("python3 -m app.tasks.cleanup", "app.tasks.cleanup"),
    ("python3 -c 'print(1)'", "python3"),
    ("java -Xmx1g -jar /opt/etl.jar", "etl"),
    ("pg_dump db | gzip > /backup/db.gz", "pg_dump"),
    ("echo hi | logger -t x", "echo"),
    ("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }", "cron.weekly"),
    ("/opt/Weird Name!/Run Me", "weird"),
    ("'/opt/my app/Do It.sh'", "do-it"),
    ("FOO=1", "job"),
    (": nothing", "job"),
])
def test_program_name(command: str, name: str) -> None:
    assert jobcommand.program_name(command) == name
    assert crontab.SLUG.fullmatch(name)


def test_unique_names_and_slugs() -> None:
    used: set[str] = set()
    assert [jobcommand.unique_name("backup", used) for _ in range(3)] == ["backup", "backup-2", "backup-3"]
    assert jobcommand.slugify("--Über Script!!") == "ber-script"
    assert jobcommand.slugify("...") == "job"
    assert len(jobcommand.slugify("x" * 200)) == jobcommand.MAX_SLUG


@pytest.mark.parametrize("cron, grace", [
    ("* * * * *", "5m"), ("*/5 * * * *", "5m"), ("0 * * * *", "15m"), ("@hourly", "15m"),
    ("0 9-17 * * 1-5", "15m"), ("0 2 * * *", "30m"), ("@daily", "30m"), ("0 2 * * 1-5", "30m"),
    ("0 3 * * 0", "1h"), ("@monthly", "1h"), ("@yearly", "1h"),
])
def test_default_grace(cron: str, grace: str) -> None:
    assert validate_cron(cron) is None
    assert crontab.default_grace(cron) == grace


def test_macros_become_macros_the_daemon_accepts() -> None:
    text = "".join(f"{m} /bin/job{i}\n" for i, m in enumerate(crontab.MACROS))
    result = crontab.convert(text)
    assert [m.cron for m in result.monitors] == ["@hourly", "@daily", "@daily", "@weekly", "@monthly", "@yearly",
                                                 "@yearly"]
    assert all(validate_cron(m.cron) is None for m in result.monitors)
    assert result.lines[1] == "@daily cronwarden run job1 -- /bin/job1"


# --------------------------------------------------------------------------
# The command.


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="cronwarden")
    crontab.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["import-crontab", *argv])
    assert args.func is crontab.cmd_import
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_reads_files_directories_and_crontab_l(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user.crontab"
    user.write_text(USER_CRONTAB)
    code, out, err = run_cli([str(user), "--timezone", "UTC", "--bin", "/opt/cronwarden/bin/cronwarden"], capsys)
    assert code == 0
    yaml_part, crontab_part = out.split(crontab.SEPARATOR + "\n")
    assert parse_config(MINIMAL + yaml_part, tmp_path / "cw.yaml").monitors["backup"].timezone == "UTC"
    assert "0 1 * * *   /opt/cronwarden/bin/cronwarden run backup-2 -- /usr/local/bin/backup --db\n" in crontab_part
    assert err == ("cronwarden import-crontab: 9 job(s) converted; left unchanged: 1 @reboot, 2 unparsable "
                   "(see the '# cronwarden:' comments)\n")

    code, out, _ = run_cli([str(user), "--yaml-only"], capsys)
    assert code == 0 and out.startswith("# cronwarden import-crontab") and crontab.SEPARATOR not in out
    code, out, _ = run_cli([str(user), "--crontab-only"], capsys)
    assert code == 0 and out == USER_CRONTAB.splitlines()[0] + "\n" + out.split("\n", 1)[1]
    assert "monitors:" not in out

    # A directory like /etc/cron.d, with --system for its user fields; cron skips names with dots.
    crond = tmp_path / "cron.d"
    crond.mkdir()
    (crond / "backup").write_text("0 2 * * * root /usr/local/bin/backup\n")
    (crond / "backup.dpkg-old").write_text("0 2 * * * root /usr/local/bin/old\n")
    code, out, _ = run_cli([str(crond), "--system", "--prefix", "db1", "--yaml-only"], capsys)
    assert code == 0 and "  db1-backup:\n" in out and "old" not in out
    assert crontab.is_system_crontab("/etc/cron.d/backup") and crontab.is_system_crontab("/etc/crontab")
    assert not crontab.is_system_crontab(str(user))

    # No FILE: `crontab -l`.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "crontab").write_text("#!/bin/sh\n[ \"$1\" = -l ] && printf '0 3 * * * /usr/bin/from-l\\n'\n")
    (fake / "crontab").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    code, out, _ = run_cli(["--crontab-only"], capsys)
    assert (code, out) == (0, "0 3 * * * cronwarden run from-l -- /usr/bin/from-l\n")
    (fake / "crontab").write_text("#!/bin/sh\necho 'no crontab for alice' >&2\nexit 1\n")
    code, _, err = run_cli([], capsys)
    assert code == 1 and err == "cronwarden import-crontab: crontab -l: no crontab for alice\n"

    code, _, err = run_cli([str(tmp_path / "absent")], capsys)
    assert code == 1 and "No such file or directory" in err
    code, _, err = run_cli([str(user), "--prefix", "Bad Prefix"], capsys)
    assert code == 2 and "--prefix" in err
    code, _, err = run_cli([str(user), "--timezone", "Nowhere/Land"], capsys)
    assert code == 2 and "unknown time zone" in err
