"""Where a task try leaves the AAC run it started, so that the next try attaches instead of rerunning.

Airflow 3 clears a task's XComs before each new try, so XCom cannot carry a run id to a
retry. What can:

- Airflow 3.3+: the task state store (``context["task_state_store"]``), scoped to the task
  instance, kept across tries and clears, written through the Execution API like XCom.
- Airflow 3.0-3.2: an Airflow Variable named after the task instance (a hash, so any
  dag, run and task id fits). Tasks read and write Variables through the Execution API
  on every 3.x; Airflow neither clears nor expires them. The provider deletes it when
  its try reports the run's end, so Variables do not pile up.

A record is written twice per start: before the run POST, with the ``x-execution-id``
it will carry, and after it, with the run id. A try killed between the two leaves the
first, and the retry resends the same execution id: AAC answers 304 if the lost POST
had started a run (the task then fails without starting a second one), or starts it.

Clearing a task is a request for a new run, not a retry. Airflow raises the task
instance's ``max_tries`` at every clear and never at a retry, so a record carries the
``max_tries`` of the try that wrote it and a cleared task ignores it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

RECORD_KEY = "aac_run"
RECORD_VERSION = 1
VARIABLE_PREFIX = "aac_provider_run_"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What one try started (or is about to start); never holds a token."""

    kind: str
    target: int
    execution_id: str
    generation: int | None  # the task instance's max_tries when written
    try_number: int | None = None
    run_id: int | None = None
    job_group_ids: tuple[int, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, **asdict(self), "job_group_ids": list(self.job_group_ids)}

    @classmethod
    def from_json(cls, value: Any) -> RunRecord | None:
        """None for anything that is not a record this version wrote."""
        if not isinstance(value, Mapping) or value.get("version") != RECORD_VERSION:
            return None
        try:
            return cls(
                kind=str(value["kind"]),
                target=int(value["target"]),
                execution_id=str(value["execution_id"]),
                generation=None if value.get("generation") is None else int(value["generation"]),
                try_number=None if value.get("try_number") is None else int(value["try_number"]),
                run_id=None if value.get("run_id") is None else int(value["run_id"]),
                job_group_ids=tuple(int(i) for i in value.get("job_group_ids") or ()),
            )
        except (KeyError, TypeError, ValueError):
            return None


class RecordStore(Protocol):
    where: str

    def load(self) -> Any: ...

    def save(self, value: dict[str, Any]) -> None: ...

    def done(self) -> None:
        """The try reported the run's end: forget what the store cannot expire by itself."""


class TaskStateStore:
    """Airflow 3.3+: the task state store; Airflow expires it (``[state_store]``)."""

    where = "the task state store"

    def __init__(self, accessor: Any) -> None:
        self._accessor = accessor

    def load(self) -> Any:
        return self._accessor.get(RECORD_KEY)

    def save(self, value: dict[str, Any]) -> None:
        self._accessor.set(RECORD_KEY, value)

    def done(self) -> None:
        """Kept: visible after success, ignored after a clear, expired by Airflow."""


class VariableStore:
    """Before Airflow 3.3: one Variable per task instance, deleted when the try reports the end."""

    def __init__(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> None:
        identity = f"{dag_id}\x00{run_id}\x00{task_id}\x00{map_index}"
        self.key = VARIABLE_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:40]
        self.description = (
            f"airflow-provider-aac: the AAC run of task {dag_id}.{task_id} (map index {map_index}) in "
            f"DAG run {run_id}, read by its retries; deleted when the task reports the run's end."
        )
        self.where = f"the Airflow Variable {self.key}"

    def load(self) -> Any:
        from airflow.sdk import Variable

        raw = Variable.get(self.key, default=None)
        return json.loads(raw) if isinstance(raw, str) else raw

    def save(self, value: dict[str, Any]) -> None:
        from airflow.sdk import Variable

        Variable.set(self.key, json.dumps(value), description=self.description)

    def done(self) -> None:
        from airflow.sdk import Variable

        delete = getattr(Variable, "delete", None)
        if delete is not None:
            delete(self.key)


def store_for(context: Mapping[str, Any]) -> RecordStore:
    from airflow_provider_aac.compat import task_state_store

    accessor = task_state_store(context)
    if accessor is not None:
        return TaskStateStore(accessor)
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return VariableStore(ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else int(map_index))


class RunResume:
    """One try's view of the record: what an earlier try left, and writing this try's start.

    A store that cannot be read or written costs crash safety, never the run: the try
    goes on without it and says so in its log, as Airflow's own ``ResumableJobMixin``
    does when it has no state store.
    """

    def __init__(
        self,
        store: RecordStore | None,
        kind: str,
        target: int,
        generation: int | None,
        try_number: int | None,
        logger: logging.Logger | Any = log,
    ) -> None:
        self.store = store
        self.kind = kind
        self.target = target
        self.generation = generation
        self.try_number = try_number
        self.log = logger
        self.current: RunRecord | None = None

    @classmethod
    def open(
        cls, context: Mapping[str, Any], kind: str, target: int, *, enabled: bool, logger: Any = log
    ) -> RunResume:
        ti = context["ti"]
        generation = getattr(ti, "max_tries", None)
        store = store_for(context) if enabled else None
        return cls(
            store,
            kind,
            target,
            None if generation is None else int(generation),
            getattr(ti, "try_number", None),
            logger,
        )

    def previous(self) -> RunRecord | None:
        """The record an earlier try of this task left for this target, if any and not cleared since."""
        if self.store is None:
            return None
        try:
            record = RunRecord.from_json(self.store.load())
        except Exception as err:
            self.log.warning(
                "Could not read %s, so this try cannot resume an earlier one: %s", self.store.where, err
            )
            self.store = None
            return None
        if record is None:
            return None
        if (record.kind, record.target) != (self.kind, self.target):
            self.log.info(
                "%s names a %s run of %s, not of %s %s: starting a new run.",
                self.store.where,
                record.kind,
                record.target,
                self.kind,
                self.target,
            )
            return None
        if record.generation != self.generation:
            self.log.info(
                "The task was cleared since try %s started its AAC run: starting a new run.",
                record.try_number,
            )
            return None
        return record

    def begin(self, execution_id: str) -> None:
        self._write(RunRecord(self.kind, self.target, execution_id, self.generation, self.try_number))

    def started(self, run_id: int, job_group_ids: list[int]) -> None:
        if self.current is not None:
            self._write(replace(self.current, run_id=run_id, job_group_ids=tuple(job_group_ids)))

    def attached(self, record: RunRecord) -> None:
        self.current = record

    def done(self) -> None:
        if self.store is None:
            return
        try:
            self.store.done()
        except Exception as err:
            self.log.warning("Could not clean up %s: %s", self.store.where, err)

    def _write(self, record: RunRecord) -> None:
        self.current = record
        if self.store is None:
            return
        try:
            self.store.save(record.to_json())
        except Exception as err:
            self.log.warning(
                "Could not write %s: if this try dies, its retry starts a second AAC run. %s",
                self.store.where,
                err,
            )
            self.store = None
