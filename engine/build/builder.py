"""`build`: a Dockerfile run one instruction at a time, each from the previous step's image,
as Docker's legacy builder (the one `docker build` uses without buildx) does it.

- RUN runs a container of the current image and commits it: one layer. COPY and ADD copy into
  a (not running) container's root and commit it: one layer. WORKDIR creates its directory
  the same way (a layer only if it did not exist). Every other instruction makes an image
  whose history entry is `empty_layer` (`/bin/sh -c #(nop)  CMD ["sh"]`).
- Every step's result is an image, untagged, whose parent is the step before; only the final
  image of the target stage is tagged. Stages the target does not need are not built.
- Cache (Docker's rule): a step is reused when an image exists whose parent is the current
  image and whose `container_config` -- the run config with the step's command, which for
  COPY/ADD names the checksum of the copied files -- is the same. `--no-cache` skips it.
- Output is Docker's: `Step N/M : ...`, ` ---> Running in <id>`, the step's output,
  ` ---> <image id>`, `Removing intermediate container <id>`, ` ---> Using cache`.
- A failed RUN stops the build with its exit code, tags nothing and, with `force_rm`, leaves
  no container either (by default, as Docker, the failed container is kept for inspection).

Parsing is the official Go parser's (the `dockerfile` package); words are processed by
`shell.py`. This module drives the engine's containers and the store; it does no HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile

from client.build_context import IgnoreRules
from client.store import ImageRecord

from ..commit import commit_container, now_rfc3339, write_image
from ..errors import EngineError, InvalidParameter, NotFound
from ..logs import HEADER
from ..users import resolve_user
from .files import CopyError, checksum, copy_into, find_sources
from .shell import SubstitutionError, process_word

DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = frozenset(
    name for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY") for name in (base, base.lower())
)
NOP = "#(nop) "
INSTRUCTIONS = frozenset(
    "FROM RUN CMD LABEL MAINTAINER EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL HEALTHCHECK SHELL".split()
)
SCRATCH = "scratch"


class BuildFailed(EngineError):
    """A step failed; `code` is its exit code (the CLI exits with it)."""

    status = 400

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    quiet: bool = False
    remove: bool = True
    force_remove: bool = False
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, Any] | None = None
    """Registry host -> client.auth.Credentials, from the request's X-Registry-Config."""


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    commands: list[Any]
    from_command: Any


@dataclass
class State:
    """Where a stage's build is: its current image and run config."""

    image: ImageRecord | None
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    meta: dict[str, str] = field(default_factory=dict)
    """The values of the ARGs before the first FROM (an `ARG NAME` in the stage takes one)."""
    author: str | None = None
    """MAINTAINER's, for the images from here on."""

    def env(self) -> dict[str, str]:
        """Variables for substitution: declared build args, then ENV (which wins)."""
        values = dict(self.args)
        for entry in self.config.get("Env") or []:
            key, _, value = entry.partition("=")
            values[key] = value
        return values


def split_stages(commands: list[Any]) -> tuple[list[Any], list[Stage]]:
    """Meta ARGs (before the first FROM) and the stages."""
    meta: list[Any] = []
    stages: list[Stage] = []
    for command in commands:
        if command.cmd.upper() == "FROM":
            values = list(command.value)
            name = None
            if len(values) == 3 and values[1].upper() == "AS":
                name = values[2].lower()
            elif len(values) != 1:
                raise BuildFailed(f"Dockerfile parse error line {command.start_line}: FROM requires either one or three arguments")
            stages.append(Stage(len(stages), name, values[0], [], command))
        elif not stages:
            if command.cmd.upper() != "ARG":
                raise BuildFailed(
                    f"Dockerfile parse error line {command.start_line}: no build stage in current context "
                    f"({command.cmd.upper()} before FROM)"
                )
            meta.append(command)
        else:
            stages[-1].commands.append(command)
    if not stages:
        raise BuildFailed("Dockerfile parse error: the Dockerfile has no FROM instruction")
    return meta, stages


class Builder:
    def __init__(
        self, engine: Any, context: Path, options: BuildOptions, emit: Callable[[str], None],
        aux: Callable[[str], None] = lambda image_id: None,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.store = engine.store
        self.containers = engine.containers
        self.context = context
        self.options = options
        self.output = emit
        self.emit = (lambda text: None) if options.quiet else emit
        self.aux = aux
        self.escape = "\\"
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.stage_images: dict[str, ImageRecord | None] = {}

    # -- the whole build -----------------------------------------------------------------------

    async def run(self) -> str:
        text = self._dockerfile_text()
        try:
            commands = list(dockerfile.parse_string(text))
        except dockerfile.GoParseError as error:
            raise BuildFailed(f"Dockerfile parse error: {error}") from None
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped.startswith("#"):
                break
            key, _, value = stripped[1:].partition("=")
            if key.strip().lower() == "escape" and value.strip():
                self.escape = value.strip()
        for command in commands:
            if command.cmd.upper() not in INSTRUCTIONS:
                raise BuildFailed(f"Dockerfile parse error line {command.start_line}: unknown instruction: {command.cmd.upper()}")
        meta, stages = split_stages(commands)
        meta_args = self._meta_args(meta)
        target = self._target_stage(stages)
        needed = self._needed_stages(stages, target, meta_args)
        self.total = sum(1 + len(stage.commands) for stage in stages if stage.index in needed)
        final: ImageRecord | None = None
        for stage in stages:
            if stage.index not in needed:
                continue
            final = await self._build_stage(stage, meta_args, is_target=stage.index == target.index)
        if final is None:
            raise BuildFailed("the build produced no image (FROM scratch with nothing else)")
        unused = [name for name in self.options.build_args if name not in self.used_args and name not in PROXY_ARGS]
        if unused:
            self.emit(f"[Warning] One or more build-args [{' '.join(sorted(unused))}] were not consumed\n")
        for tag in self.options.tags:
            await self.engine.images.tag(final.manifest_digest, tag, None)
        self.aux(final.id)
        if self.options.quiet:
            self.output(f"{final.id}\n")  # all that `-q` prints, as dockerd sends it
        self.emit(f"Successfully built {final.short_id}\n")
        for tag in self.options.tags:
            self.emit(f"Successfully tagged {self.engine.images.reference(tag).familiar()}\n")
        return final.id

    def _dockerfile_text(self) -> str:
        path = self.context / self.options.dockerfile
        if posixpath.normpath(self.options.dockerfile).startswith(".."):
            raise InvalidParameter(f"the Dockerfile ({self.options.dockerfile}) must be within the build context")
        try:
            return path.read_text()
        except FileNotFoundError:
            raise InvalidParameter(f"Cannot locate specified Dockerfile: {self.options.dockerfile}") from None
        except IsADirectoryError:
            raise InvalidParameter(f"the Dockerfile ({self.options.dockerfile}) is a directory") from None

    def _meta_args(self, meta: list[Any]) -> dict[str, str]:
        values: dict[str, str] = {}
        for command in meta:
            for name, default in self._arg_pairs(command, values):
                if name in self.options.build_args and self.options.build_args[name] is not None:
                    values[name] = str(self.options.build_args[name])
                    self.used_args.add(name)
                elif default is not None:
                    values[name] = default
        return values

    def _target_stage(self, stages: list[Stage]) -> Stage:
        if not self.options.target:
            return stages[-1]
        for stage in stages:
            if stage.name == self.options.target.lower():
                return stage
        raise BuildFailed(f"failed to reach build target {self.options.target} in Dockerfile")

    def _needed_stages(self, stages: list[Stage], target: Stage, meta_args: dict[str, str]) -> set[int]:
        by_name = {stage.name: stage for stage in stages if stage.name}
        needed: set[int] = set()
        pending = [target]
        while pending:
            stage = pending.pop()
            if stage.index in needed:
                continue
            needed.add(stage.index)
            base = self._word(stage.base, meta_args, stage.from_command)
            references = [base.lower()]
            for command in stage.commands:
                for flag in command.flags:
                    if flag.startswith("--from="):
                        references.append(flag[len("--from=") :].lower())
            for reference in references:
                if reference in by_name and by_name[reference].index < stage.index:
                    pending.append(by_name[reference])
                elif reference.isdigit() and int(reference) < stage.index:
                    pending.append(stages[int(reference)])
        return needed

    # -- one stage -----------------------------------------------------------------------------

    async def _build_stage(self, stage: Stage, meta_args: dict[str, str], *, is_target: bool) -> ImageRecord | None:
        base = self._word(stage.base, meta_args, stage.from_command)
        self._announce(stage.from_command)
        state = await self._from(base, stage)
        state.meta = meta_args
        if is_target and self.options.labels:
            labels = dict(state.config.get("Labels") or {})
            labels.update(self.options.labels)
            state.config["Labels"] = labels
        self._show_image(state)
        for trigger in (state.config.get("OnBuild") or []) if state.image is not None else []:
            self.emit("# Executing 1 build trigger\n")
            for command in dockerfile.parse_string(trigger):
                await self._dispatch(command, state, announce=False)
        if state.config.get("OnBuild"):
            state.config["OnBuild"] = None
        for command in stage.commands:
            await self._dispatch(command, state)
        self.stage_images[stage.name or str(stage.index)] = state.image
        self.stage_images[str(stage.index)] = state.image
        return state.image

    def _announce(self, command: Any) -> None:
        self.step += 1
        self.emit(f"Step {self.step}/{self.total} : {command.original.splitlines()[0] if command.original else command.cmd}\n")

    def _show_image(self, state: State) -> None:
        if state.image is not None:
            self.emit(f" ---> {state.image.short_id}\n")

    async def _from(self, base: str, stage: Stage) -> State:
        flags = self._flags(stage.from_command, ("--platform",))
        if base.lower() in self.stage_images:
            image = self.stage_images[base.lower()]
        elif base.lower() == SCRATCH:
            image = None
        else:
            image = await self._image(base, platform=flags.get("--platform") or None)
        if image is None:
            return State(image=None, config={"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]})
        config = (await asyncio.to_thread(self.store.config, image)).get("config") or {}
        return State(image=image, config=dict(config), shell=list(config.get("Shell") or DEFAULT_SHELL))

    async def _image(self, name: str, platform: str | None = None) -> ImageRecord:
        if not self.options.pull:
            try:
                return await self.engine.images.resolve(name)
            except NotFound:
                pass
        self.emit(f"{name}: Pulling from {self.engine.images.reference(name).familiar()}\n")
        registry = self.engine.images.reference(name).registry
        credentials = (self.options.credentials or {}).get(registry)
        try:
            return await self.engine.images.pull(name, platform=platform, credentials=credentials)
        except EngineError as error:
            raise BuildFailed(error.message) from None

    # -- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, command: Any, state: State, *, announce: bool = True) -> None:
        if announce:
            self._announce(command)
        instruction = command.cmd.upper()
        try:
            await getattr(self, f"_do_{instruction.lower()}")(command, state)
        except (SubstitutionError, CopyError) as error:
            raise BuildFailed(f"Dockerfile line {command.start_line}: {error}") from None

    def _word(self, text: str, env: dict[str, str], command: Any) -> str:
        try:
            return process_word(text, env, self.escape)
        except SubstitutionError as error:
            raise BuildFailed(f"Dockerfile line {command.start_line}: {error}") from None

    def _words(self, command: Any, state: State) -> list[str]:
        """The instruction's arguments (the parser already split them), each processed."""
        env = state.env()
        return [process_word(value, env, self.escape) for value in command.value]

    def _flags(self, command: Any, allowed: tuple[str, ...]) -> dict[str, str]:
        flags = {}
        for flag in command.flags:
            name, _, value = flag.partition("=")
            if name not in allowed:
                raise BuildFailed(f"Dockerfile line {command.start_line}: unknown flag: {name}")
            flags[name] = value
        return flags

    def _command_form(self, command: Any, state: State) -> list[str]:
        if command.json:
            return list(command.value)
        return [*state.shell, " ".join(command.value)]

    # -- steps that only change the config -----------------------------------------------------

    async def _nop(self, state: State, text: str) -> None:
        """An image with the new config and an `empty_layer` history entry (cached like Docker)."""
        probe = dict(state.config)
        probe["Cmd"] = ["/bin/sh", "-c", f"{NOP}{text}"]
        if await self._use_cache(state, probe):
            return
        history = {"created": now_rfc3339(), "created_by": f"/bin/sh -c {NOP}{text}", "empty_layer": True}
        extra: dict[str, Any] = {"container_config": probe}
        if state.author is not None:
            extra["author"] = state.author
        parent = state.image
        base_config = await asyncio.to_thread(self.store.config, parent) if parent is not None else None
        state.image = await asyncio.to_thread(
            write_image, self.store, None, base_config=base_config, run_config=dict(state.config), layers=[],
            diff_ids=[], history=[history], extra=extra, parent=parent,
        )  # fmt: skip
        self._show_image(state)

    async def _use_cache(self, state: State, probe: dict[str, Any]) -> bool:
        """Move to the cached image of this step, if there is one."""
        cached = await self._cached(state, probe)
        if cached is None:
            return False
        state.image = cached
        self.emit(" ---> Using cache\n")
        self._show_image(state)
        return True

    async def _cached(self, state: State, probe: dict[str, Any]) -> ImageRecord | None:
        if self.options.no_cache:
            return None
        parent_id = state.image.id if state.image is not None else None

        def find() -> ImageRecord | None:
            for record in self.store.images():
                if record.parent != parent_id or (parent_id is None and record.parent is not None):
                    continue
                if parent_id is None and record.diff_ids:
                    continue
                try:
                    config = self.store.config(record)
                except (OSError, LookupError, ValueError):
                    continue
                if config.get("container_config") == probe:
                    return record
            return None

        return await asyncio.to_thread(find)

    async def _do_env(self, command: Any, state: State) -> None:
        values = list(command.value)
        env = list(state.config.get("Env") or [])
        shown = []
        for index in range(0, len(values) - 1, 2):
            key = values[index]
            value = self._word(values[index + 1], state.env(), command)
            env = [entry for entry in env if entry.partition("=")[0] != key] + [f"{key}={value}"]
            state.config["Env"] = env
            shown.append(f"{key}={value}")
        await self._nop(state, f" ENV {' '.join(shown)}")

    async def _do_label(self, command: Any, state: State) -> None:
        values = list(command.value)
        labels = dict(state.config.get("Labels") or {})
        shown = []
        for index in range(0, len(values) - 1, 2):
            key = self._word(values[index], state.env(), command)
            value = self._word(values[index + 1], state.env(), command)
            labels[key] = value
            shown.append(f"{key}={value}")
        state.config["Labels"] = labels
        await self._nop(state, f" LABEL {' '.join(shown)}")

    async def _do_maintainer(self, command: Any, state: State) -> None:
        state.author = " ".join(command.value)
        await self._nop(state, f" MAINTAINER {' '.join(command.value)}")

    async def _do_expose(self, command: Any, state: State) -> None:
        ports = dict(state.config.get("ExposedPorts") or {})
        shown = []
        for word in self._words(command, state):
            for port in word.split():
                key = port if "/" in port else f"{port}/tcp"
                ports[key] = {}
                shown.append(key)
        state.config["ExposedPorts"] = ports
        await self._nop(state, f" EXPOSE {' '.join(sorted(shown))}")

    async def _do_user(self, command: Any, state: State) -> None:
        state.config["User"] = self._words(command, state)[0]
        await self._nop(state, f" USER {state.config['User']}")

    async def _do_volume(self, command: Any, state: State) -> None:
        volumes = dict(state.config.get("Volumes") or {})
        words = self._words(command, state)
        paths = words if command.json else [part for word in words for part in word.split()]
        for path in paths:
            volumes[path] = {}
        state.config["Volumes"] = volumes
        await self._nop(state, f" VOLUME {json.dumps(paths)}")

    async def _do_stopsignal(self, command: Any, state: State) -> None:
        state.config["StopSignal"] = self._words(command, state)[0]
        await self._nop(state, f" STOPSIGNAL {state.config['StopSignal']}")

    async def _do_cmd(self, command: Any, state: State) -> None:
        state.config["Cmd"] = self._command_form(command, state)
        state.cmd_set = True
        await self._nop(state, f" CMD {json.dumps(state.config['Cmd'])}")

    async def _do_entrypoint(self, command: Any, state: State) -> None:
        state.config["Entrypoint"] = self._command_form(command, state) if command.value else None
        if not state.cmd_set:
            state.config["Cmd"] = None
        await self._nop(state, f" ENTRYPOINT {json.dumps(state.config['Entrypoint'])}")

    async def _do_shell(self, command: Any, state: State) -> None:
        if not command.json:
            raise BuildFailed(f"Dockerfile line {command.start_line}: SHELL requires the arguments to be in JSON form")
        state.shell = list(command.value)
        state.config["Shell"] = list(command.value)
        await self._nop(state, f" SHELL {json.dumps(state.shell)}")

    async def _do_onbuild(self, command: Any, state: State) -> None:
        expression = command.original.split(None, 1)[1] if command.original else ""
        if command.sub_cmd and command.sub_cmd.upper() in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildFailed(f"Dockerfile line {command.start_line}: {command.sub_cmd.upper()} isn't allowed as an ONBUILD trigger")
        state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), expression]
        await self._nop(state, f" ONBUILD {expression}")

    async def _do_healthcheck(self, command: Any, state: State) -> None:
        values = list(command.value)
        if values and values[0].upper() == "NONE":
            state.config["Healthcheck"] = {"Test": ["NONE"]}
        else:
            flags = self._flags(command, ("--interval", "--timeout", "--start-period", "--start-interval", "--retries"))
            rest = values[1:]
            test = ["CMD", *rest] if command.json else ["CMD-SHELL", " ".join(rest)]
            check: dict[str, Any] = {"Test": test}
            for flag, key in (("--interval", "Interval"), ("--timeout", "Timeout"), ("--start-period", "StartPeriod"), ("--start-interval", "StartInterval")):
                if flag in flags:
                    check[key] = _duration_ns(flags[flag], command)
            if "--retries" in flags:
                check["Retries"] = int(flags["--retries"])
            state.config["Healthcheck"] = check
        await self._nop(state, f" HEALTHCHECK &{{{state.config['Healthcheck'].get('Test')}}}")

    async def _do_arg(self, command: Any, state: State) -> None:
        shown = []
        for name, default in self._arg_pairs(command, state.env()):
            if name in self.options.build_args and self.options.build_args[name] is not None:
                state.args[name] = str(self.options.build_args[name])
                self.used_args.add(name)
            elif default is not None:
                state.args[name] = default
            elif name in state.meta:
                state.args[name] = state.meta[name]
            shown.append(name if default is None else f"{name}={default}")
        await self._nop(state, f" ARG {' '.join(shown)}")

    def _arg_pairs(self, command: Any, env: dict[str, str]) -> list[tuple[str, str | None]]:
        pairs = []
        for value in command.value:
            name, equals, default = value.partition("=")
            pairs.append((name, self._word(default, env, command) if equals else None))
        return pairs

    # -- steps that change files ---------------------------------------------------------------

    def _arg_env(self, state: State) -> list[str]:
        """Build args as the RUN's environment (not kept in the image)."""
        env_keys = {entry.partition("=")[0] for entry in state.config.get("Env") or []}
        out = [f"{k}={v}" for k, v in sorted(state.args.items()) if k not in env_keys]
        out += [f"{k}={v}" for k, v in sorted(self.options.build_args.items()) if k in PROXY_ARGS and v is not None]
        return out

    async def _do_run(self, command: Any, state: State) -> None:
        if state.image is None:
            raise BuildFailed(f"Dockerfile line {command.start_line}: RUN in a stage FROM scratch has no shell to run")
        if command.heredocs:
            script = "".join(heredoc.content for heredoc in command.heredocs)
            argv = [*state.shell, script]
        else:
            argv = self._command_form(command, state)
        args_env = [entry for entry in self._arg_env(state) if entry.partition("=")[0] not in PROXY_ARGS]
        saved = [f"|{len(args_env)}", *args_env, *argv] if args_env else argv
        probe = dict(state.config)
        probe["Cmd"] = saved
        if await self._use_cache(state, probe):
            return
        body = {
            **{k: v for k, v in state.config.items() if k not in ("Cmd", "Entrypoint", "Healthcheck", "OnBuild")},
            "Image": state.image.manifest_digest,
            "Cmd": argv,
            "Entrypoint": [""],  # the step's command alone, never behind the image's entrypoint
            "Env": [*(state.config.get("Env") or []), *self._arg_env(state)],
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": {"NetworkMode": "host"},
        }
        container_id, _ = await self.containers.create(body, None)
        self.emit(f" ---> Running in {container_id[:12]}\n")
        exited = self.containers.waiter(container_id, "next-exit")
        attaching = asyncio.ensure_future(self.containers.attach(container_id, stdin=False, stdout=True, stderr=True))
        await asyncio.sleep(0)
        try:
            await self.containers.start(container_id)
        except EngineError as error:
            attaching.cancel()
            await self._cleanup(container_id, failed=True)
            raise BuildFailed(error.message, 127 if "not found" in error.message else 126) from None
        connection = await attaching
        if connection is not None:
            await self._stream_output(connection)
        code = await exited
        if code != 0:
            await self._cleanup(container_id, failed=True)
            shown = " ".join(saved) if not command.json else json.dumps(argv)
            raise BuildFailed(f"The command '{shown}' returned a non-zero code: {code}", code)
        await self._commit(state, container_id, probe, " ".join(saved))

    async def _stream_output(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = connection
        try:
            while True:
                try:
                    head = await reader.readexactly(HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                _, length = HEADER.unpack(head)
                self.emit((await reader.readexactly(length)).decode(errors="replace"))
        finally:
            writer.close()

    async def _commit(self, state: State, container_id: str, probe: dict[str, Any], created_by: str, *, announce: bool = True) -> None:
        live = self.containers.get(container_id)
        record = live.record
        parent = state.image
        assert parent is not None
        image_config = dict(state.config)
        image = await asyncio.to_thread(
            commit_container, self.store, record, self.containers.files(record), parent, None,
            image_config=image_config, container_config=probe, created_by=created_by,
            author=state.author or (await asyncio.to_thread(self.store.config, parent)).get("author") or "",
        )  # fmt: skip
        state.image = image
        await self._cleanup(container_id, failed=False, announce=announce)
        self._show_image(state)

    async def _cleanup(self, container_id: str, *, failed: bool, announce: bool = True) -> None:
        """Remove a step's container as `--rm` (after success) and `--force-rm` (always) say;
        COPY's and WORKDIR's containers (never run) always go, silently, as in Docker."""
        remove = self.options.force_remove or (self.options.remove and not failed) or not announce
        if remove:
            with contextlib.suppress(EngineError):
                await self.containers.remove(container_id, force=True, volumes=True)
            if not failed and announce:
                self.emit(f"Removing intermediate container {container_id[:12]}\n")

    async def _do_copy(self, command: Any, state: State) -> None:
        await self._copy(command, state, add=False)

    async def _do_add(self, command: Any, state: State) -> None:
        await self._copy(command, state, add=True)

    async def _copy(self, command: Any, state: State, *, add: bool) -> None:
        instruction = "ADD" if add else "COPY"
        allowed = ("--chown", "--chmod") + (() if add else ("--from",)) + (("--checksum", "--keep-git-dir") if add else ("--link",))
        flags = self._flags(command, allowed)
        words = self._words(command, state)
        if len(words) < 2:
            raise BuildFailed(f"Dockerfile line {command.start_line}: {instruction} requires at least two arguments")
        sources, destination = words[:-1], words[-1]
        for source in sources:
            if source.startswith(("http://", "https://", "git@")):
                raise BuildFailed(
                    f"Dockerfile line {command.start_line}: {instruction} of the remote URL {source} is not supported by this "
                    "builder (it has no network access): download the file into the build context and COPY it"
                )
        workdir = state.config.get("WorkingDir") or "/"
        if not destination.startswith("/"):
            destination = posixpath.join(workdir, destination) + ("/" if destination.endswith("/") or destination == "." else "")
        chmod = int(flags["--chmod"], 8) if flags.get("--chmod") else None
        source_root, in_context, cleanup = await self._source_root(flags.get("--from"), command)
        try:
            found = await asyncio.to_thread(find_sources, source_root, sources, instruction=instruction, line=command.start_line, in_context=in_context)
            if state.image is None and not found:
                return
            chown_spec = flags.get("--chown")
            digest = await asyncio.to_thread(checksum, found, None, chmod)
            kind = "dir" if len(found) == 1 and found[0].path.is_dir() else ("file" if len(found) == 1 else "multi")
            text = f"{NOP}{instruction} {kind}:{digest} in {destination} "
            probe = dict(state.config)
            probe["Cmd"] = ["/bin/sh", "-c", text + (f"--chown={chown_spec} " if chown_spec else "")]
            if await self._use_cache(state, probe):
                return
            await self._in_container(state, probe, f"/bin/sh -c {text}", lambda root: self._place(
                root, found, destination, chown_spec, chmod, add, instruction, command.start_line))
        finally:
            cleanup()

    def _place(self, root: Path, found: list[Any], destination: str, chown_spec: str | None, chmod: int | None,
               add: bool, instruction: str, line: int) -> None:  # fmt: skip
        chown = None
        if chown_spec:
            user = resolve_user(root, chown_spec)
            chown = (user.uid, user.gid)
        copy_into(root, found, destination, chown=chown, chmod=chmod, extract=add, instruction=instruction, line=line)

    async def _source_root(self, from_flag: str | None, command: Any) -> tuple[Path, bool, Callable[[], None]]:
        """Where COPY reads from: the context, or another stage's or image's root (materialized)."""
        if not from_flag:
            return self.context, True, lambda: None
        key = from_flag.lower()
        image = self.stage_images.get(key) if key in self.stage_images else await self._image(from_flag)
        directory = Path(tempfile.mkdtemp(prefix="from-", dir=self.engine.settings.data_root / "tmp"))
        if image is not None:
            await asyncio.to_thread(self.store.materialize, image, directory)
        return directory, False, lambda: shutil.rmtree(directory, ignore_errors=True)

    async def _do_workdir(self, command: Any, state: State) -> None:
        path = self._words(command, state)[0]
        current = state.config.get("WorkingDir") or "/"
        state.config["WorkingDir"] = posixpath.normpath(posixpath.join(current, path))
        workdir = state.config["WorkingDir"]
        if state.image is None:
            await self._nop(state, f"WORKDIR {workdir}")
            return
        probe = dict(state.config)
        probe["Cmd"] = ["/bin/sh", "-c", f"{NOP}WORKDIR {workdir}"]
        if await self._use_cache(state, probe):
            return

        def make(root: Path) -> None:
            from .files import _make_dirs

            _make_dirs(root, workdir, 0, 0)

        await self._in_container(state, probe, f"/bin/sh -c {NOP}WORKDIR {workdir}", make)

    async def _in_container(self, state: State, probe: dict[str, Any], created_by: str, change: Callable[[Path], None]) -> None:
        """Apply `change` to a fresh (never started) container's root and commit it."""
        if state.image is None:
            scratch = await asyncio.to_thread(
                write_image, self.store, None, base_config=None, run_config=dict(state.config), layers=[], diff_ids=[],
                history=[], extra={},
            )  # fmt: skip
            state.image = scratch
        body = {"Image": state.image.manifest_digest, "Cmd": probe["Cmd"], "Entrypoint": [""], "HostConfig": {"NetworkMode": "none"}}
        container_id, _ = await self.containers.create(body, None)
        try:
            root = await self.containers.mount_rootfs(container_id)
            try:
                await asyncio.to_thread(change, root)
            finally:
                await self.containers.unmount_rootfs(container_id)
        except BaseException:
            with contextlib.suppress(EngineError):
                await self.containers.remove(container_id, force=True, volumes=True)
            raise
        await self._commit(state, container_id, probe, created_by, announce=False)


def _duration_ns(text: str, command: Any) -> int:
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    import re

    total = 0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        total += int(float(amount) * units[unit])
    if total == 0 and text not in ("0", "0s"):
        raise BuildFailed(f"Dockerfile line {command.start_line}: invalid duration {text!r}")
    return total


def extract_context(archive: Path, directory: Path, dockerfile_name: str) -> None:
    """Unpack the context tar (plain or compressed) safely, then drop what `.dockerignore`
    excludes (the Dockerfile and `.dockerignore` stay, as Docker keeps them for itself)."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(directory, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise InvalidParameter(f"the build context is not a valid tar archive: {error}") from None
    rules = IgnoreRules.of_context(directory)
    if not rules.patterns:
        return
    keep = {posixpath.normpath(dockerfile_name), ".dockerignore"}
    for root, dirs, files in os.walk(directory, topdown=False):
        for name in files + dirs:
            full = Path(root) / name
            relative = os.path.relpath(full, directory)
            if relative in keep or not rules.excludes(relative):
                continue
            if full.is_dir() and not full.is_symlink():
                if not any(full.iterdir()):
                    full.rmdir()
            else:
                full.unlink()
