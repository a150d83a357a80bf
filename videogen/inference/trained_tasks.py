"""Which uses a transformer can serve: the tasks its export says it was trained on, and nothing else.

Every window the engine decodes names a task of ``transformer.TASKS`` (the one whose condition it
builds) and a class or none. It is *served* when the export trained a task with the same condition
and the same kind of class token:

- the condition: :data:`SERVED_BY` lists, for each decoded task, the trained tasks whose condition it
  is. A user's inpainting box is served by any inpainting task (the box is the user's choice);
  outpainting modes are tasks of their own (``outpaint --mode vertical`` needs ``outpaint_vertical``);
  unconditional clips are served by class generation too (its class dropout trains the UNCOND class).
- the class: a class needs a class-conditional trained task (``class_frame_prediction``,
  ``class_generation``, ``image_generation``) and a model with classes; no class needs a task trained
  without one, or a class-conditional one trained with class dropout (> 0) or without labels.
- classifier-free guidance needs the unconditional twin: condition dropout (tasks with a condition)
  or class dropout (generation) > 0.

Anything else is refused with one line naming the tasks the export has (:meth:`TrainedTasks.require`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from videogen.errors import UserError
from videogen.transformer.tasks import get_task

SERVED_BY: dict[str, tuple[str, ...]] = {
    "frame_prediction": ("frame_prediction", "class_frame_prediction"),
    "class_frame_prediction": ("class_frame_prediction",),
    "interpolation": ("interpolation",),
    "inpaint": ("inpaint", "inpaint_central", "inpaint_dynamic"),
    "inpaint_central": ("inpaint_central", "inpaint"),
    "inpaint_dynamic": ("inpaint_dynamic",),
    "outpaint": ("outpaint", "outpaint_central"),
    "outpaint_central": ("outpaint_central", "outpaint"),
    "outpaint_vertical": ("outpaint_vertical",),
    "outpaint_horizontal": ("outpaint_horizontal",),
    "outpaint_dynamic": ("outpaint_dynamic",),
    "class_generation": ("class_generation",),
    "unconditional": ("unconditional", "class_generation"),
    "image_generation": ("image_generation",),
}
"""Decoded task -> the trained tasks whose condition (and task token) it uses."""

USES = {
    "frame_prediction": "frame prediction",
    "class_frame_prediction": "class-conditional frame prediction",
    "interpolation": "interpolation",
    "inpaint": "inpainting a box",
    "inpaint_central": "inpainting the central box",
    "inpaint_dynamic": "inpainting a sliding box",
    "outpaint": "outpainting around the central box",
    "outpaint_central": "outpainting around the central box",
    "outpaint_vertical": "outpainting around a vertical band",
    "outpaint_horizontal": "outpainting around a horizontal band",
    "outpaint_dynamic": "outpainting around a sliding band",
    "class_generation": "clip generation",
    "unconditional": "clip generation",
    "image_generation": "image generation",
}


@dataclass(frozen=True)
class TrainedTasks:
    """The trained task mix of a transformer export (``TransformerExportInfo``) and its classes.

    ``weights``: task name -> weight; ``task_options``: the builders' options it was trained with;
    ``source``: how messages name the transformer (its export folder).
    """

    weights: Mapping[str, float]
    class_dropout: float = 0.0
    condition_dropout: float = 0.0
    num_classes: int = 0
    task_options: Mapping[str, Mapping] = field(default_factory=dict)
    source: str = "the transformer"

    @classmethod
    def from_info(cls, info, num_classes: int, source: str = "the transformer") -> TrainedTasks:
        """From a ``videogen.export.TransformerExportInfo``; an unknown task name is a :class:`UserError`."""
        weights = {}
        for name, weight in info.tasks.items():
            try:
                weights[get_task(name).name] = float(weight)
            except UserError:
                raise UserError(
                    f"transformer {source} lists task {name!r}, which this videogen does not know"
                ) from None
        options = {get_task(n).name: dict(o) for n, o in info.task_options.items() if n in info.tasks}
        return cls(weights, info.class_dropout, info.condition_dropout, num_classes, options, source)

    def describe(self) -> str:
        """``frame_prediction (FP), interpolation (FI), ...`` (with the class dropout when it trained one)."""
        names = ", ".join(f"{name} ({get_task(name).code})" for name in self.weights)
        return names + (f"; class dropout {self.class_dropout:g}" if self.class_dropout > 0 else "")

    def _uncond_ok(self, name: str) -> bool:
        return not get_task(name).class_conditional or self.class_dropout > 0 or self.num_classes == 0

    def serving(self, task: str, with_class: bool) -> str | None:
        """The trained task that serves decoding ``task`` with (or without) a class, or None."""
        task = get_task(task).name
        for name in SERVED_BY.get(task, (task,)):
            if name not in self.weights:
                continue
            if with_class and get_task(name).class_conditional and self.num_classes > 0:
                return name
            if not with_class and self._uncond_ok(name):
                return name
        return None

    def serves(self, task: str, with_class: bool = False) -> bool:
        return self.serving(task, with_class) is not None

    def require(self, task: str, with_class: bool = False, guidance: bool = False) -> str:
        """The serving trained task, else a :class:`UserError` in one line naming the tasks there are."""
        task = get_task(task).name
        served = self.serving(task, with_class)
        use = USES.get(task, task) + (" with a class" if with_class else "")
        if served is None:
            if with_class and self.serves(task, False):
                fix = "leave the class out (--class)"
            elif not with_class and self.serves(task, True):
                fix = "give a class (--class)"
            else:
                fix = "use an export trained on it (masking.tasks)"
            raise UserError(
                f"transformer {self.source} was not trained for {use} (task {task}); it was trained on "
                f"{self.describe()}; {fix}"
            )
        if guidance:
            dropout = self.condition_dropout if get_task(served).has_condition else self.class_dropout
            if dropout <= 0:
                kind = "condition" if get_task(served).has_condition else "class"
                raise UserError(
                    f"transformer {self.source} was trained without {kind} dropout, so classifier-free "
                    f"guidance has no unconditional twin for {use}; use --guidance 0"
                )
        return served

    def option(self, task: str, name: str, default):
        """Builder option ``name`` that ``task`` (or the trained task serving it) was trained with."""
        for candidate in SERVED_BY.get(task, (task,)):
            if name in self.task_options.get(candidate, {}):
                return self.task_options[candidate][name]
        return default
