"""The terminal view of a run: CloudWatch-style logs while it goes, a summary table at the end."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.control import strip_control_codes
from rich.text import Text

from .errors import DefinitionError, DorcError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from .result import RunResult, StepResult


def console(stderr: bool = False) -> Console:
    # The stream is fixed now: the Lambda runtime swaps sys.stdout while handlers run.
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


def wraps(out: Console) -> bool:
    """A terminal (or a width stated in ``COLUMNS``) gets dorc's own lines wrapped at spaces, as
    a terminal would otherwise break them mid-word; piped output keeps each line whole (grep)."""
    return out.is_terminal or bool(os.environ.get("COLUMNS"))


def say(out: Console, head: Text | str, body: Text | str) -> None:
    """``head`` then ``body``, wrapped at spaces with the lines hanging under the body's start; a
    token too long for that (a path, a deployed name) starts a line of its own instead."""
    head, body = Text(head) if isinstance(head, str) else head, Text(body) if isinstance(body, str) else body
    if not wraps(out):
        out.print(head + body)
        return
    longest = max((len(w) for w in body.plain.split()), default=0)
    indent = head.cell_len if longest <= out.width - head.cell_len else 2 if longest <= out.width - 2 else 0
    lines = list(body.wrap(out, max(out.width - indent, 10), overflow="fold"))
    if indent < head.cell_len:  # the head on a line of its own
        first = head.copy()
        first.rstrip()
        out.print(first, soft_wrap=True)
    else:
        lines[0] = head + lines[0] if lines else head
        if len(lines) == 1:
            lines[0].rstrip()
            out.print(lines[0], soft_wrap=True)
            return
        lines = [lines[0]] + [Text(" " * indent) + line for line in lines[1:]]
        indent = 0
    for line in lines:
        line = Text(" " * indent) + line
        line.rstrip()
        out.print(line, soft_wrap=True)


_FRAME = ("START ", "END ", "REPORT ")  # the runtime's own lines, dim
FLUSH_EVERY = 0.05  # s: on a terminal, log lines are drawn in batches at most this far apart


class TerminalObserver:
    """Prints each step's START/logs/END/REPORT as it happens; a spinner on a real terminal.

    A handler may print a great many lines, and each costs it nothing in Lambda; here each is
    drawn while the handler waits (the runtime does not count that time as the handler's, but it
    is still the run's). So a line costs little: not on a terminal, it is written as plain text,
    as rich would have written it; on a terminal (styles, the spinner) lines are drawn by rich in
    batches, at most ``FLUSH_EVERY`` apart, the last ones by a helper thread when the handler
    goes quiet.
    """

    def __init__(self, out: Console, *, show_logs: bool = True, spinner: bool = True):
        """``spinner=False``: the terminal is the handler's (``dorc run --debug``): nothing is
        drawn over what it prints or over its debugger's prompt."""
        self.out = out
        self.show_logs = show_logs
        self._status = None
        self._spinner = spinner
        self._plain = not out.is_terminal  # no styles, no spinner: plain text is what rich writes
        self._lock = threading.RLock()
        self._pending: list[str] = []
        self._drawn_at = 0.0
        self._quiet = threading.Condition(self._lock)
        self._drawer: threading.Thread | None = None

    def progress(self, message: str) -> None:
        """Deployment stages (LocalStack, Pulumi): one dim line each."""
        with self._lock:
            self._draw()
            say(self.out, Text("  · ", style="dim"), Text(message, style="dim"))

    def engine_output(self, text: str) -> None:
        """Pulumi's own lines, as it writes them."""
        with self._lock:
            self._draw()
            self.out.print(text, end="", markup=False, highlight=False)

    def step_started(self, layer: str, function: str, deployed_name: str) -> None:
        with self._lock:
            self._draw()
            say(self.out, Text("▶ ", style="bold cyan"), Text.assemble((f"{layer} ", "cyan"), (function, "bold"),
                                                                    (f"  ({deployed_name})", "dim")))
            if self.out.is_terminal and self._spinner:
                self._status = self.out.status(f"running {layer} {function}…", spinner="dots")
                self._status.start()

    def log(self, line: str) -> None:
        if not self.show_logs:
            return
        with self._lock:
            if self._plain:
                if "\t" in line and not line.isascii():  # rich measures wide characters for a tab
                    self.out.print(Text("  " + line))
                    return
                file = self.out.file
                file.write(strip_control_codes("  " + line).expandtabs(8) + "\n")
                file.flush()
                return
            self._pending.append(line)
            if time.monotonic() - self._drawn_at >= FLUSH_EVERY:
                self._draw()
            elif self._drawer is None:
                self._drawer = threading.Thread(target=self._draw_when_quiet, daemon=True, name="dorc-log-drawer")
                self._drawer.start()
            elif len(self._pending) == 1:
                self._quiet.notify()

    def _draw(self) -> None:
        """Draws the pending lines as one text (the lock held)."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        text = Text()
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            text.append("  " + line, style="dim" if line.startswith(_FRAME) else "")
        self.out.print(text)
        self._drawn_at = time.monotonic()

    def _draw_when_quiet(self) -> None:
        """Lines a handler printed just after a batch, before going quiet, are not left waiting."""
        with self._lock:
            while self._drawer is threading.current_thread():
                if self._pending:
                    wait = self._drawn_at + FLUSH_EVERY - time.monotonic()
                    if wait <= 0:
                        self._draw()
                        continue
                    self._quiet.wait(wait)
                else:
                    self._quiet.wait()

    def _stop_drawer(self) -> None:
        drawer, self._drawer = self._drawer, None
        if drawer is not None:
            self._quiet.notify_all()

    def interrupted(self) -> None:
        """Ctrl-C mid-step: no step_finished will come; draw what is pending, stop the spinner."""
        with self._lock:
            self._draw()
            self._stop_drawer()
            if self._status is not None:
                self._status.stop()
                self._status = None

    def step_finished(self, step: StepResult) -> None:
        with self._lock:
            self._draw()
            self._stop_drawer()
            self._step_finished(step)

    def _step_finished(self, step: StepResult) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if step.succeeded:
            return
        err = step.error
        say(self.out, Text("✗ ", style="bold red"), Text.assemble((f"{step.layer} {step.function} failed: ", "red"),
                                                                  (f"{err.type}: {err.message}" if err else "", "bold red")))
        if err and err.stack_trace and not self.show_logs:  # with logs shown, the [ERROR] lines had them
            here = os.getcwd() + os.sep  # paths below the working directory as the user types them
            for frame in err.stack_trace:
                for line in frame.rstrip().replace(f'File "{here}', 'File "').splitlines():
                    say(self.out, "    ", Text(line, style="red"))


def summary(out: Console, result: RunResult, *, project=None) -> None:
    """The steps as a table; on a terminal too narrow for it, one entry per step whose lines
    wrap at spaces (a table would cut names to "…" or fold them mid-word). ``project``: for the
    fix of an import a requirements.txt declares. Linear in the steps, one write for them all:
    a 1000-step run's summary costs milliseconds, not the second rich's Table would take."""
    from .describe import format_duration
    from .records import SHORT_ID

    rows = []
    for s in result.steps:
        status = ("succeeded", "green") if s.succeeded else (
            f"failed ({s.error.type})" if s.error else "failed", "red")
        # worked out as the step finished: no output read back from the run's spool, none kept here
        code = "-" if s.status_code is None else json.dumps(s.status_code)
        rows.append((s, status, format_duration(s.duration_ms), f"{s.max_memory_mb} MB" if s.max_memory_mb else "-",
                     code))
    title = f"{result.pipeline} ({result.target}, env {result.env})"
    cells = [[(s.layer, ""), (s.function, ""), status, (duration, ""), (memory, ""), (code, "")]
             for s, status, duration, memory, code in rows]
    table = _steps_table(out, title, ("layer", "function", "status", "duration", "memory", "statusCode"), cells,
                        right=3)
    if table is not None:
        _write(out, table)
    else:
        lines = [Text(title, style="italic")]
        for s, (status, style), duration, memory, code in rows:
            lines.append((Text("  ✓ " if s.succeeded else "  ✗ ", style="green" if s.succeeded else "red"),
                          Text.assemble((s.layer, "bold"), " ", (s.function, "bold"))))
            lines.append(("      ", Text.assemble((status, style), f" · {duration} · memory {memory}",
                                                  f" · statusCode {code}" if code != "-" else "")))
        _say_all(out, lines)
    verdict = Text("✓ pipeline succeeded", style="bold green") if result.succeeded else Text(
        f"✗ pipeline cancelled: {result.error.message if result.error else 'interrupted'}", style="bold yellow"
    ) if result.cancelled else Text(
        f"✗ pipeline failed at {result.failed_step.layer} {result.failed_step.function}" if result.failed_step
        else f"✗ pipeline failed: {result.error.type if result.error else ''}", style="bold red")
    verdict.append(f"  in {format_duration(result.duration_ms)}", style="dim")
    say(out, "", verdict)
    if project is not None and result.failed_step is not None:
        print_import_fix(out, project, result.failed_step)
    if result.sandbox:
        say(out, Text("sandbox: ", style="dim"), Text(result.sandbox, style="dim" if result.sandbox == "full" else "yellow"))
    if result.iam:
        say(out, Text("iam: ", style="dim"), Text(result.iam, style="dim" if result.iam == "enforced" else "yellow"))
    for warning in result.warnings:
        say(out, Text("warning: ", style="bold yellow"), warning)
    if result.record_path:
        shown = shown_path(result.record_path) + (f" (dorc runs show {result.run_id[:SHORT_ID]})" if result.run_id else "")
        say(out, Text("run record: ", style="dim"), Text(shown, style="dim"))


def print_import_fix(out: Console, project, step: StepResult) -> None:
    """A ``Runtime.ImportModuleError``: the requirements.txt change that fixes it (the runtime
    reports the error as AWS does; the fix is dorc's to say)."""
    if step.error is None or step.error.type != "Runtime.ImportModuleError":
        return
    from .import_check import install_hint

    instance, _, layer = step.layer.partition("/")
    hint = install_hint(project.layer_dir(instance, layer) / "src" / step.function, step.error.message)
    if hint:
        say(out, Text("  fix: ", style="yellow"), hint)


def _steps_table(out: Console, title: str, header: tuple[str, ...], rows: list[list[tuple[str, str]]], *,
                right: int) -> Text | None:
    """Rows of (text, style) cells drawn as rich draws ``Table(title=title, title_justify="left")``
    with ``no_wrap`` columns, those from index ``right`` on justified right (on dorc's soft-wrapping
    console); None when it is wider than the console, where the caller lays the rows out otherwise.

    Built in one pass, as one Text: rich's Table measures and lays out every cell as a renderable,
    about a millisecond a row."""
    from rich import box
    from rich.cells import cell_len

    widths = [cell_len(h) for h in header]
    for row in rows:
        for i, (text, _) in enumerate(row):
            if not text.isascii():
                widths[i] = max(widths[i], cell_len(text))
            elif len(text) > widths[i]:
                widths[i] = len(text)
    padded = [w + 2 for w in widths]
    total = sum(padded) + len(padded) + 1
    if total > out.width:
        return None
    frame = box.HEAVY_HEAD.substitute(out.options, safe=out.safe_box)

    def line(cells, left: str, between: str, end: str, style: str = "") -> None:
        text.append(left)
        for i, (value, cell_style) in enumerate(cells):
            if i:
                text.append(between)
            pad = " " * (widths[i] - (len(value) if value.isascii() else cell_len(value)))
            # the cell's padding, then its text justified in the text's own style, as rich writes them
            text.append(" ", style)
            text.append(pad + value if i >= right else value + pad, style or cell_style)
            text.append(" ", style)
        text.append(end + "\n")

    text = Text()
    text.append(title + "\n", "table.title")
    text.append(frame.get_top(padded) + "\n")
    line([(h, "") for h in header], frame.head_left, frame.head_vertical, frame.head_right, "table.header")
    text.append(frame.get_row(padded, "head") + "\n")
    for row in rows:
        line(row, frame.mid_left, frame.mid_vertical, frame.mid_right)
    text.append(frame.get_bottom(padded))
    return text


def _write(out: Console, text: Text) -> None:
    """One Text, printed; off a terminal (no styles to draw) written as the plain text rich would write."""
    if out.is_terminal:
        out.print(text)
    else:
        out.file.write(text.plain + "\n")
        out.file.flush()


def _say_all(out: Console, lines: list) -> None:
    """Lines as one write: a Text as it is (as ``out.print`` writes it), a ``(head, body)`` as
    ``say`` writes it; those that need wrapping are left to ``say``."""
    pending, wrapped, width = Text(), wraps(out), out.width
    for item in lines:
        if not isinstance(item, tuple):
            pending.append_text(item)
            pending.append("\n")
            continue
        head, body = (Text(part) if isinstance(part, str) else part for part in item)
        if "\n" not in body.plain and (not wrapped or head.cell_len + body.cell_len <= width):
            whole = head + body
            if wrapped:
                whole.rstrip()
            pending.append_text(whole)
            pending.append("\n")
            continue
        if pending:
            pending.right_crop(1)
            _write(out, pending)
            pending = Text()
        say(out, head, body)
    if pending:
        pending.right_crop(1)
        _write(out, pending)


def shown_path(path) -> str:
    """Relative to the working directory when below it: shorter, and still a path to paste."""
    try:
        rel = os.path.relpath(str(path))
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def print_error(exc: DorcError) -> None:
    err = console(stderr=True)
    if isinstance(exc, DefinitionError):
        err.print(Text(f"error: {len(exc.problems)} problem(s) in the pipeline definition", style="bold red"))
        for p in exc.problems:
            print_problem(err, p)
    else:
        say(err, Text("error: ", style="bold red"), exc.message)
    if exc.hint:
        say(err, Text("  fix: ", style="yellow"), exc.hint)


def print_problem(out: Console, p: Problem) -> None:
    where = Text(p.file, style="bold")
    if p.function:
        where.append(p.function_label, style="cyan")
    say(out, Text("  ✗ ", style="red"), where + Text(": " + p.message))
