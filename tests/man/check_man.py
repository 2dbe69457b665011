#!/usr/bin/python3
"""check_man.py LSHLAB MANPAGE - the man page and the --help texts name the same options.

For `lshlab --help` and `lshlab COMMAND --help` of every command that the main
help lists, every option the help prints (-x, --long) must appear in the man
page's section for it (.SS COMMAND under COMMANDS; .SH OPTIONS for the main
help), and every option that section names must appear in the help (except
-h/--help, which every command takes, and PENDING below).  Every command must have its section, and every environment
variable the main help names must be under ENVIRONMENT.  Exit 0 when they
agree, 1 with a list of the differences.
"""
import re
import subprocess
import sys

# Options the man page documents ahead of the CLI (the lead adds them on
# merge); a help that prints them is fine too.  Empty this once they land.
PENDING = {}

OPTION = re.compile(r"(?<![\w\-./`'])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
ENVVAR = re.compile(r"\b(LSHLAB_[A-Z_]+)\b")


def roff_text(line):
    """A roff source line as plain text: font escapes gone, \\- as -."""
    line = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", line)
    line = line.replace("\\-", "-").replace("\\&", "").replace("\\ ", " ")
    if line.startswith("."):  # a macro: keep its arguments
        line = line.split(None, 1)[1] if " " in line else ""
        line = line.replace('"', " ")
    return line


def sections(path):
    """{'SH NAME': text, ..., 'SS run': text} of the man page."""
    out, key = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if raw.startswith('.\\"'):
                continue
            m = re.match(r'^\.(SH|SS)\s+"?([^"]*)"?\s*$', raw)
            if m:
                key = "%s %s" % (m.group(1), m.group(2).strip())
                out[key] = ""
                continue
            if key:
                out[key] += roff_text(raw) + "\n"
    return out


def help_text(exe, *args):
    r = subprocess.run([exe, *args, "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("check_man: %s %s --help exited %d: %s" % (exe, " ".join(args), r.returncode,
                                                            r.stderr))
    return r.stdout


def options(text):
    return set(OPTION.findall(text))


def main():
    exe, man = sys.argv[1], sys.argv[2]
    sec = sections(man)
    main_help = help_text(exe)
    m = re.search(r"^commands:\n(.*?)\n\n", main_help, re.S | re.M)
    if not m:
        sys.exit("check_man: no 'commands:' list in lshlab --help")
    commands = re.findall(r"^  ([a-z]+)\b", m.group(1), re.M)
    problems = []
    if len(commands) < 4:
        problems.append("lshlab --help lists only %s" % commands)
    pairs = [("lshlab", "SH OPTIONS", main_help, ())]
    pairs += [("lshlab " + c, "SS " + c, None, (c,)) for c in commands]
    for name, key, text, args in pairs:
        if key not in sec:
            problems.append("%s: the man page has no section .%s" % (name, key))
            continue
        text = text if text is not None else help_text(exe, *args)
        in_help, in_man = options(text), options(sec[key])
        # Every command takes -h/--help, though not every help says so.
        pending = {"-h", "--help"} | (PENDING.get(args[0], set()) if args else set())
        for o in sorted(in_help - in_man):
            problems.append("%s --help prints %s, the man page's .%s does not name it"
                            % (name, o, key))
        for o in sorted(in_man - in_help - pending):
            problems.append("the man page's .%s names %s, %s --help does not" % (key, o, name))
    env = sec.get("SH ENVIRONMENT", "")
    for v in sorted(set(ENVVAR.findall(main_help))):
        if v not in env:
            problems.append("lshlab --help names %s, the man page's ENVIRONMENT does not" % v)
    if problems:
        print("check_man: the man page and --help differ:")
        for p in problems:
            print("  " + p)
        return 1
    print("check_man: %d sections agree with --help (%s)" % (len(pairs), ", ".join(
        ["lshlab"] + commands)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
