"""The DAG shapes every orchestrator in the benchmarks runs, as plain data.

A DAG is a mapping from task name to the names it depends on, listed in an order where every
task follows its dependencies (level by level, so parallel chains interleave and a
submit-in-order runner never parks a worker on a task whose upstream was queued later).
No third-party imports: the Prefect script runs this module under another interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass

Dag = dict[str, list[str]]


@dataclass(frozen=True)
class Shape:
    """A named DAG shape.

    Attributes:
        key: Short id used on the command line and in the JSON (``A``, ``B``).
        title: What the shape is, for tables.
        dag: Task name → dependencies, in topological (level) order.
    """

    key: str
    title: str
    dag: Dag

    @property
    def size(self) -> int:
        """Number of tasks."""
        return len(self.dag)


def chains(count: int, length: int) -> Dag:
    """``count`` independent chains of ``length`` tasks, ordered level by level.

    Task ``t{c}_{i}`` depends on ``t{c}_{i-1}``.
    """
    dag: Dag = {}
    for step in range(length):
        for chain in range(count):
            dag[f"t{chain}_{step}"] = [f"t{chain}_{step - 1}"] if step else []
    return dag


def fan_out_in(width: int) -> Dag:
    """One root, ``width`` parallel tasks after it, one join after all of them."""
    dag: Dag = {"extract": []}
    for index in range(width):
        dag[f"part{index}"] = ["extract"]
    dag["join"] = [f"part{index}" for index in range(width)]
    return dag


SHAPES: dict[str, Shape] = {
    "A": Shape("A", "10 parallel chains of 20", chains(10, 20)),
    "B": Shape("B", "1 sequential chain of 200", chains(1, 200)),
}
"""The two 200-task shapes of the orchestration-overhead benchmark."""
