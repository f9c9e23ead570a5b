"""Many jobs' writes in one round trip: RQ's own commands, recorded, run atomically behind a guard.

On a small machine a round trip to Redis costs a worker more CPU than the commands it carries
(two system calls each way), and a job took eight of them. Here the writes that start or end a
run are made by RQ's own code (or offload's) on a pipeline that is never executed: `record` keeps
the commands it queued. One script then runs any number of such groups, each only if its guards
hold (the job is still queued and the `LREM` of its id from the intermediate list removed it: the
claim is this worker's; the job has no dependents: nothing needs RQ's WATCH), all in one atomic
call. A group whose guard fails writes nothing, and its caller falls back to RQ's own way.

`GroupCommit` lets the threads of a concurrent worker share round trips: a thread that finds no
call in flight sends every group waiting, its own and those that came while the last call was out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis import Redis

from service.store.layout import APPLIED_SECONDS

if TYPE_CHECKING:
    from redis.client import Pipeline

Command = tuple[Any, ...]

# ARGV: how long an applied mark lasts, the number of groups; then, per group: its applied mark's
# key ('' for none), its number of guards and, per guard, its length, its arguments and the reply it
# must give; then the number of commands and, per command, its length and arguments. A group whose
# mark exists was applied by an earlier call of the same script (sent again after its reply was
# lost): it is reported run and not run again. Else its guards run in order until one gives another
# reply. Returns one 1 (ran, or ran before) or 0 (a guard failed, none of its commands ran) per group.
_RUN_GROUPS = """
local mark_seconds = ARGV[1]
local at = 3
local ran = {}
for g = 1, tonumber(ARGV[2]) do
  local mark = ARGV[at]
  local done = mark ~= '' and redis.call('EXISTS', mark) == 1
  local ok = true
  local guards = tonumber(ARGV[at + 1])
  at = at + 2
  for _ = 1, guards do
    local size = tonumber(ARGV[at])
    if ok and not done then
      local reply = redis.call(unpack(ARGV, at + 1, at + size))
      ok = tostring(reply) == ARGV[at + size + 1]
    end
    at = at + size + 2
  end
  local count = tonumber(ARGV[at])
  at = at + 1
  for c = 1, count do
    local length = tonumber(ARGV[at])
    if ok and not done then redis.call(unpack(ARGV, at + 1, at + length)) end
    at = at + length + 1
  end
  if ok and not done and mark ~= '' then redis.call('SET', mark, '1', 'EX', mark_seconds) end
  ran[g] = (ok or done) and 1 or 0
end
return ran
"""


@dataclass
class Group:
    """One job's writes, and the guards they depend on: commands, each with the reply it must give."""

    commands: list[Command]
    guards: list[tuple[Command, str | int]] = field(default_factory=list)
    # A key the group sets once applied (layout.applied_key): the same group sent again, by a retry
    # of a call whose reply was lost, is reported applied rather than run twice or refused.
    mark: str = ""


def record(connection: Redis, write: Callable[[Pipeline], Any]) -> tuple[list[Command], Any]:
    """The commands `write` queues on a pipeline (never executed), and what `write` returned."""
    pipe = connection.pipeline(transaction=False)
    returned = write(pipe)
    commands = [tuple(args) for args, _options in pipe.command_stack]
    pipe.reset()
    return commands, returned


def run_groups(connection: Redis, groups: Sequence[Group]) -> list[bool]:
    """Run the groups in one atomic script call; for each, whether its guard held (and it ran)."""
    if not groups:
        return []
    argv: list[Any] = [APPLIED_SECONDS, len(groups)]
    for group in groups:
        argv.append(group.mark)
        argv.append(len(group.guards))
        for guard, reply in group.guards:
            argv.append(len(guard))
            argv.extend(guard)
            argv.append(reply)
        argv.append(len(group.commands))
        for command in group.commands:
            argv.append(len(command))
            argv.extend(command)
    script = _script(connection)
    ran = script(keys=[], args=argv, client=connection)
    return [bool(flag) for flag in ran]


_scripts: dict[int, Any] = {}
_scripts_lock = threading.Lock()


def _script(connection: Redis) -> Any:
    """The registered script (EVALSHA, loaded once per connection pool)."""
    key = id(connection.connection_pool)
    with _scripts_lock:
        script = _scripts.get(key)
        if script is None:
            script = _scripts[key] = connection.register_script(_RUN_GROUPS)
        return script


@dataclass(eq=False)
class _Pending:
    group: Group
    done: threading.Event = field(default_factory=threading.Event)
    ran: bool = False
    error: BaseException | None = None


class GroupCommit:
    """Groups from many threads, sent together: whoever finds no call in flight sends all waiting."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._sending = False

    def run(self, group: Group) -> bool:
        """Run `group` (with whatever else is waiting); whether its guard held. Raises what Redis raised."""
        pending = _Pending(group)
        with self._lock:
            self._waiting.append(pending)
            if self._sending:
                leader = False
            else:
                self._sending = leader = True
        if leader:
            self._send_all()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.ran

    def _send_all(self) -> None:
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._sending = False
                    return
            try:
                ran = run_groups(self.connection, [pending.group for pending in batch])
            except BaseException as exc:  # each waiting thread gets it: none of their groups ran
                for pending in batch:
                    pending.error = exc
                    pending.done.set()
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._sending = False
                    raise
                continue
            for pending, flag in zip(batch, ran, strict=True):
                pending.ran = flag
                pending.done.set()
