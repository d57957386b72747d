"""The documentation site's code is code that runs: every block in its guides is an example file
the suite runs (included by the snippets extension, so the page shows what runs), and the getting
started page gives the README's two commands, which CI runs. (CI builds the site with
``mkdocs build --strict``: a missing include, page or link fails it.)"""

from __future__ import annotations

import re

from .conftest import ROOT

#: Each example a page includes, and the test that runs it.
RUN_BY = {
    "examples/calc_server.py": "test_demo_runs",  # (the demo starts it)
    "examples/demo.py": "test_demo_runs",
    "examples/typed.py": "test_typed_example_runs",
    "examples/sync_client.py": "test_sync_client_example_runs",
    "examples/plugins/plugin.py": "test_plugin_host_example_runs",
    "examples/plugins/host.py": "test_plugin_host_example_runs",
    "examples/event_loop.py": "test_event_loop_example_runs",
    "examples/cli_tour.sh": "test_the_command_line_tour_runs",
    "examples/deploy/ipfi-geometry.service": "test_the_systemd_unit_serves",
    "examples/deploy/ipfi-geometry-gateway.service": "test_the_gateway_unit_serves_over_tls_with_tokens",
    "examples/deploy/nginx-ipfi.conf": "test_the_nginx_example_fronts_a_gateway",
    "examples/morse/host.py": "test_an_rpc_session_over_a_morse_link",
    "examples/ipfi_rust/module.py": "test_the_ipfi_rust_example_host_and_module_run",
    "examples/ipfi_rust/host.py": "test_the_ipfi_rust_example_host_and_module_run",
}
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SNIPPET = re.compile(r'--8<-- "([^"]+)"\n')


def blocks(page: str) -> list[str]:
    return FENCE.findall((ROOT / "docs" / page).read_text())


def test_every_block_of_the_guides_is_an_example_the_suite_runs() -> None:
    runners = (ROOT / "tests/test_examples.py").read_text()
    pages = sorted(path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs/guides").glob("*.md"))
    assert len(pages) >= 7
    pages.append("DEPLOY.md")
    included = set()
    for page in pages:
        for block in blocks(page):
            match = SNIPPET.fullmatch(block)
            assert match, f"{page}: a block that is not an included example:\n{block}"
            path = match[1]
            assert (ROOT / path).is_file(), f"{page} includes {path}, which does not exist"
            assert f"def {RUN_BY[path]}(" in runners, f"{path}: {RUN_BY.get(path)} is not in test_examples.py"
            included.add(path)
    assert included == set(RUN_BY), "an example no page includes: " + ", ".join(set(RUN_BY) - included)


def test_getting_started_gives_the_readmes_two_commands() -> None:
    readme = FENCE.findall((ROOT / "README.md").read_text())[:2]
    assert blocks("index.md") == readme
