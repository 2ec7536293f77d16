"""The stages of one housing support, in the contracts' TenancyStage order.

    house_hunting ─▶ application ─▶ contract ─▶ move_in ─▶ accompaniment
          ▲              │              │
          └──────────────┴──────────────┘   (an application refused, a contract fallen through)
    any stage ─▶ ended (with a TenancyEndReason)

Moving in records the tenancy; a support can end at any stage, and an ended one moves no more.
"""

from __future__ import annotations

from tsunagu_contracts.codes import TenancyStage as Stage

FORWARD: dict[Stage, Stage] = {
    Stage.HOUSE_HUNTING: Stage.APPLICATION,
    Stage.APPLICATION: Stage.CONTRACT,
    Stage.CONTRACT: Stage.MOVE_IN,
    Stage.MOVE_IN: Stage.ACCOMPANIMENT,
}
BACK_TO_HUNTING = frozenset({Stage.APPLICATION, Stage.CONTRACT})
TENANCY_STAGES = frozenset({Stage.MOVE_IN, Stage.ACCOMPANIMENT})
"""Stages in which the person lives in the home the support found: check-ins are due."""


def allowed_next(stage: Stage) -> tuple[Stage, ...]:
    if stage is Stage.ENDED:
        return ()
    moves = [FORWARD[stage]] if stage in FORWARD else []
    if stage in BACK_TO_HUNTING:
        moves.append(Stage.HOUSE_HUNTING)
    return (*moves, Stage.ENDED)


class IllegalMove(Exception):
    def __init__(self, stage: Stage, to: Stage):
        self.stage, self.to, self.allowed = stage, to, allowed_next(stage)
        allowed = ", ".join(s.value for s in self.allowed) or "none: the support has ended"
        super().__init__(f"a support in {stage.value} cannot move to {to.value}; allowed: {allowed}")

    @property
    def message_ja(self) -> str:
        allowed = "、".join(f"「{s.label_ja}」" for s in self.allowed)
        if not allowed:
            return "この支援は終了しています。段階は変更できません。"
        return f"「{self.stage.label_ja}」から「{self.to.label_ja}」へは進めません。次に選べる段階: {allowed}"


def check_move(stage: Stage, to: Stage) -> None:
    if to not in allowed_next(stage):
        raise IllegalMove(stage, to)
