"""``ai-stack mcp``: the server driven by the MCP SDK's own client, in memory and over stdio,
against the Ollama double."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ai_stack.cli.serve_mcp import Service, build_server
from ai_stack.config import Settings
from tests.conftest import plan, verdict
from tests.ollama_double import OllamaDouble
from tests.test_lease import finished, started_together

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {
    "run_task",
    "plan",
    "batch_run",
    "batch_status",
    "list_models",
    "system_profile",
    "history_list",
    "history_show",
    "search_knowledge",
}


def serve(tmp_path: Path, **settings: Any) -> Service:
    return Service(Settings.model_validate(settings), root=tmp_path)


def stdio_server(directory: Path) -> StdioServerParameters:
    """`ai-stack mcp` as a client starts it: a subprocess on stdio, in ``directory``."""
    return StdioServerParameters(
        command=sys.executable,
        args=[str(ROOT / "main.py"), "mcp"],
        env=dict(os.environ),
        cwd=str(directory),
    )


def with_client(service: Service, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(build_server(service)) as client:
            await body(client)

    try:
        anyio.run(main)
    finally:
        service.close()


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def test_every_tool_is_listed_with_schemas(on_double: OllamaDouble, tmp_path: Path) -> None:
    async def body(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        run = tools["run_task"]
        assert run.input_schema["required"] == ["task"]
        assert {"task", "files", "review", "direct", "max_rounds"} <= set(
            run.input_schema["properties"]
        )
        assert "output" in run.output_schema["properties"]

    with_client(serve(tmp_path), body)


def test_run_task_returns_the_json_result_with_progress_and_is_recorded(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    on_double.enqueue("wc -l *.py", model="qwen2.5:14b")
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def body(client: Client) -> None:
        arguments = {"task": "count lines", "direct": True}
        result = structured(
            await client.call_tool("run_task", arguments, progress_callback=on_progress)
        )
        assert result["output"] == "wc -l *.py" and result["mode"] == "direct"
        runs = structured(await client.call_tool("history_list", {}))["runs"]
        assert [(r["id"], r["source"]) for r in runs] == [(result["id"], "mcp")]
        shown = structured(await client.call_tool("history_show", {"run_id": result["id"][:6]}))
        assert shown["output"] == "wc -l *.py" and shown["status"] == "ok"

    with_client(serve(tmp_path), body)
    assert progress == ["executor · execute · ollama:qwen2.5:14b"]


def test_plan_returns_a_reviewed_plan_without_an_answer(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    on_double.enqueue(plan("find files", "count"), model="mistral:7b")
    on_double.enqueue(verdict("approve", 9), model="qwen2.5:7b")

    async def body(client: Client) -> None:
        result = structured(await client.call_tool("plan", {"task": "count lines"}))
        assert [s["title"] for s in result["plan"]["steps"]] == ["find files", "count"]
        assert result["stop_reason"] == "approved" and result["rounds"] == 1

    with_client(serve(tmp_path), body)
    assert not [e for e in on_double.events("load") if e["model"] == "qwen2.5:14b"]


def test_errors_are_tool_errors_with_the_cli_message(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("API_KEY=abc\n")
    (tmp_path / "notes.txt").write_text("a note\n")

    async def body(client: Client) -> None:
        missing = await client.call_tool("run_task", {"task": "x", "executor": "ollama:nope:1b"})
        assert missing.is_error and "nope:1b" in missing.content[0].text
        secret = await client.call_tool("run_task", {"task": "x", "files": [".env"]})
        assert secret.is_error and "hold secrets" in secret.content[0].text
        outside = await client.call_tool("run_task", {"task": "x", "files": ["/etc/hostname"]})
        assert outside.is_error and "outside the allowed directories" in outside.content[0].text
        # the hints speak of what a client can change, never of command-line flags
        assert "files.allow_paths in the server's config" in outside.content[0].text
        assert "files.allow_sensitive in the server's config" in secret.content[0].text
        assert "--allow" not in outside.content[0].text + secret.content[0].text
        unknown = await client.call_tool("history_show", {"run_id": "zzzz"})
        assert unknown.is_error and "No run with id 'zzzz'" in unknown.content[0].text

    with_client(serve(tmp_path), body)
    assert not on_double.events("generate")


def test_batch_run_of_inline_tasks(on_double: OllamaDouble, tmp_path: Path) -> None:
    on_double.enqueue("one", "two", model="qwen2.5:14b")

    async def body(client: Client) -> None:
        job = structured(
            await client.call_tool(
                "batch_run", {"tasks": ["first task", "second task"], "direct": True}
            )
        )
        assert job["status"] == "ok" and job["summary"]["loads"] == 1
        assert [t["status"] for t in job["summary"]["tasks"]] == ["ok", "ok"]
        again = structured(await client.call_tool("batch_status", {"job_id": job["job_id"]}))
        assert again["status"] == "ok"

    with_client(serve(tmp_path), body)


def test_a_cancelled_call_stops_and_unloads(on_double: OllamaDouble, tmp_path: Path) -> None:
    on_double.seconds_per_token = 0.05
    on_double.enqueue("word " * 200, model="qwen2.5:14b")

    async def body(client: Client) -> None:
        started = anyio.Event()

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            started.set()

        async with anyio.create_task_group() as group:

            async def call() -> None:
                await client.call_tool(
                    "run_task", {"task": "slow", "direct": True}, progress_callback=on_progress
                )

            group.start_soon(call)
            with anyio.fail_after(30):
                await started.wait()
            await anyio.sleep(0.3)
            group.cancel_scope.cancel()
        with anyio.fail_after(30):
            while not on_double.events("unload"):
                await anyio.sleep(0.05)
        runs = structured(await client.call_tool("history_list", {}))["runs"]
        assert runs[0]["status"] == "interrupted"

    with_client(serve(tmp_path), body)


def test_over_stdio_with_the_sdk_client(on_double: OllamaDouble, tmp_path: Path) -> None:
    """Every tool, through the server as a client starts it: a subprocess on stdio."""
    on_double.enqueue("An answer over stdio.", "batch one", "batch two", model="qwen2.5:14b")
    on_double.enqueue(plan("find files"), model="mistral:7b")
    on_double.enqueue(verdict("approve", 9), model="qwen2.5:7b")

    async def main() -> None:
        async with Client(stdio_server(tmp_path)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = structured(await client.call_tool("run_task", {"task": "hi", "direct": True}))
            assert result["output"] == "An answer over stdio."
            models = structured(await client.call_tool("list_models", {}))["models"]
            assert "qwen2.5:14b" in {m["name"] for m in models}
            profile = structured(await client.call_tool("system_profile", {}))
            assert profile["budget_bytes"] > 0
            planned = structured(await client.call_tool("plan", {"task": "count lines"}))
            assert planned["stop_reason"] == "approved"
            job = structured(
                await client.call_tool("batch_run", {"tasks": ["one", "two"], "direct": True})
            )
            assert job["status"] == "ok"
            status = structured(await client.call_tool("batch_status", {"job_id": job["job_id"]}))
            assert status["summary"]["tasks"][1]["status"] == "ok"
            runs = structured(await client.call_tool("history_list", {}))["runs"]
            assert {r["source"] for r in runs} == {"mcp"} and len(runs) == 4  # plan included
            shown = structured(await client.call_tool("history_show", {"run_id": result["id"]}))
            assert shown["output"] == "An answer over stdio."

    anyio.run(main)


@pytest.mark.parametrize("policy", ["one-at-a-time"])
def test_an_mcp_client_and_cli_processes_take_turns(
    on_double: OllamaDouble, tmp_path: Path, policy: str
) -> None:
    """An MCP client over stdio, two one-shots and a batch, on three models at once:
    never two models resident, none unloaded mid-use, every load counted by whoever caused
    it."""
    on_double.seconds_per_token = 0.01
    on_double.enqueue(*["word " * 40] * 8)
    cli = started_together(tmp_path, "t", "t")
    loads_by_mcp = 0

    async def main() -> None:
        nonlocal loads_by_mcp
        async with Client(stdio_server(tmp_path)) as client:
            for _ in range(2):
                result = structured(
                    await client.call_tool(
                        "run_task",
                        {"task": "via mcp", "direct": True, "executor": "ollama:qwen2.5:14b"},
                    )
                )
                loads_by_mcp += result["metrics"]["loads"]

    anyio.run(main)
    outputs = finished(cli)
    loads = on_double.events("load")
    assert all(load["others"] == [] for load in loads), loads
    assert not [e for e in on_double.events("unload") if e["busy"]]
    counted = loads_by_mcp + sum(json.loads(out)["metrics"]["loads"] for out, _ in outputs[:2])
    counted += json.loads(outputs[2][0])["loads"]
    assert counted == len(loads)
