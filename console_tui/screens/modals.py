"""Modal screens: the confirmation every command asks for, the rider-action form, help."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..commands import PENALTY_MAX_S, REASON_MAX, REASON_MIN, label

__all__ = ["HELP", "ConfirmScreen", "HelpScreen", "RiderActionScreen", "RiderInput"]


class ConfirmScreen(ModalScreen[bool]):
    """ "Are you sure?" for one command: ``y`` confirms, ``n`` or Escape cancels."""

    BINDINGS = [  # noqa: RUF012 (Textual's class attribute)
        Binding("y", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, summary: str, who_when: str) -> None:
        super().__init__()
        self._title, self._summary, self._who_when = title, summary, who_when

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Label(self._title, id="dialog-title")
            yield Static(self._summary, id="confirm-summary", markup=False)
            yield Static(self._who_when, id="confirm-who", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Confirm (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter alone never confirms

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)


@dataclass(frozen=True, slots=True)
class RiderInput:
    """What the rider-action form collected."""

    seconds: int
    """A penalty's seconds (0 for other actions)."""
    reason: str
    """Why."""


class RiderActionScreen(ModalScreen[RiderInput | None]):
    """Seconds (for a penalty) and the reason; Enter goes on, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, kind: str, rider: str) -> None:
        super().__init__()
        self.kind, self.rider = kind, rider

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            title = f"{label(self.kind).capitalize()} — {self.rider}"
            yield Label(title, id="dialog-title", markup=False)
            if self.kind == "penalty":
                yield Label("Seconds (negative to correct an earlier penalty)")
                yield Input(placeholder="e.g. 20", type="integer", id="seconds")
            yield Label(f"Reason ({REASON_MIN} to {REASON_MAX} characters, shown in the log)")
            yield Input(
                placeholder="e.g. drafting behind a vehicle", id="reason", max_length=REASON_MAX
            )
            yield Static("", id="form-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Next (Enter)", id="next", variant="warning")
                yield Button("Cancel (Esc)", id="cancel", variant="primary")

    def on_mount(self) -> None:
        first = "#seconds" if self.kind == "penalty" else "#reason"
        self.query_one(first, Input).focus()

    @on(Input.Submitted, "#seconds")
    def _to_reason(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#next")
    def _submit(self) -> None:
        seconds = 0
        if self.kind == "penalty":
            text = self.query_one("#seconds", Input).value.strip()
            try:
                seconds = int(text)
            except ValueError:
                seconds = 0
            if not seconds or abs(seconds) > PENALTY_MAX_S:
                self._error(f"seconds: a whole number, not 0, within ±{PENALTY_MAX_S}")
                self.query_one("#seconds", Input).focus()
                return
        reason = self.query_one("#reason", Input).value.strip()
        if not REASON_MIN <= len(reason) <= REASON_MAX:
            self._error(f"reason: {REASON_MIN} to {REASON_MAX} characters")
            return
        self.dismiss(RiderInput(seconds, reason))

    def _error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
[b]Gruppetto race control — keys[/b]

[b]Rider actions[/b] (on the rider under the cursor; lower case)
  [b]p[/b]  time penalty (seconds and a reason; negative corrects one)
  [b]f[/b]  DNF — did not finish        [b]s[/b]  DNS — did not start
  [b]x[/b]  DSQ — disqualify            [b]i[/b]  reinstate (undo DNF/DNS/DSQ)

[b]Race commands[/b] (the whole race; upper case)
  [b]S[/b]  start        [b]N[/b]  neutralise        [b]R[/b]  resume
  [b]F[/b]  finish       [b]P[/b]  publish results

[b]Moving around[/b]
  ↑ ↓ PgUp PgDn   pick a rider        Tab   next panel
  [b]g[/b]  another race        [b]?[/b]  this help        [b]ctrl+q[/b]  quit

Every command asks for confirmation ([b]y[/b] confirms, [b]n[/b]/Esc cancels) and goes in the
action log with who decided it and when. It goes to the cloud; when the cloud is out of
reach, to the event relay (which applies it at once and forwards it later); when neither
answers, to this console's queue, retried until a server has it — once, by its action id.

[b]Columns[/b]  Gap: time behind the leader at the same point of the course.  Fix: time
since the tracker's last fix.  Link: live (< 10 s), late, lost, none; how the fix came.
Batt: the tracker's battery, ⚡ charging, yellow below 20 % (and a low-battery alert),
— unknown or no word for 5 min.  Pen: total time penalty.
"""


class HelpScreen(ModalScreen[None]):
    """Every key, what each column means, where commands go."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]  # noqa: RUF012

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="help"):
            yield Static(HELP, id="help-text")
            yield Button("Close (Esc)", id="close", variant="primary")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
