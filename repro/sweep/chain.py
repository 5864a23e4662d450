"""One Jupyter kernel for a chain of runs: the notebooks of one (p, seed) run one after another in it.

A kernel costs seconds to start and each notebook pays again for its imports and for preparing the data;
in one kernel the chain 01 -> 04 -> 02 -> 03 of a (p, seed) pays once (``make_context`` keeps the
prepared data per process). Every notebook is still executed by papermill into its own executed
notebook and writes its own result JSON; before a notebook the kernel's namespace is reset
(``%reset -f``, figures closed), so a notebook sees only its own variables, as in a kernel of its own.
After each notebook the kernel's phase timings (:mod:`repro.phases`) are read back and cleared.

Which runs share a kernel is :func:`chain_key`'s decision: the per-run notebooks of one (p, seed)
that follow each other in the plan; a once-notebook (``00_data``, ``06_report``) gets a kernel of its own.
"""

from __future__ import annotations

import ast
import asyncio
import json
import time
from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.utils import merge_kwargs, remove_args

from repro.sweep.kernel import kernel_transport
from repro.sweep.plan import Run

ENGINE = "repro-chain"
KERNEL_START = "kernel_start"

#: run in the kernel before every notebook but the first: the notebook starts from an empty namespace
RESET = ("get_ipython().run_line_magic('reset', '-f')\n"
         "import sys as _s\n"
         "_s.modules['matplotlib.pyplot'].close('all') if 'matplotlib.pyplot' in _s.modules else None\n"
         "del _s")
#: what the sweep reads back after every notebook (and clears): the phase totals as JSON text
PHASES_EXPR = "__import__('repro.phases', fromlist=['take_json']).take_json()"


def chain_key(run: Run) -> tuple[int, int] | None:
    """Runs with the same key that follow each other share a kernel; ``None`` never shares."""
    return (run.p, run.seed) if run.per_run else None


def _abandon_pending_tasks() -> None:
    """Cancel what nbclient still waits for after an interrupt (the cell's reply and output, the kernel's
    pulse), and take their outcome when they end: the kernel is shut down next, and nbclient ends a cancelled
    cell with DeadKernelError, which would otherwise be printed as "Task exception was never retrieved"."""
    from jupyter_core.utils import ensure_event_loop

    for task in asyncio.all_tasks(ensure_event_loop()):
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        task.cancel()


class _ChainClient(PapermillNotebookClient):
    """papermill's client on a kernel it does not own: reset before the cells, phases read after them."""

    def __init__(self, nb_man, chain: "ChainKernel", **kw: Any):
        super().__init__(nb_man, km=chain.km, **kw)
        self.chain = chain

    def _silent(self, code: str = "", expressions: dict[str, str] | None = None) -> dict[str, Any]:
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions or {})
        reply = self.wait_for_reply(msg_id)
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok":
            raise RuntimeError(f"the sweep's bookkeeping code failed in the kernel: {content.get('evalue', content)}")
        return content

    def papermill_execute_cells(self) -> None:
        if self.chain.used:
            self._silent(RESET)
        self.chain.used += 1
        try:
            super().papermill_execute_cells()
        except KeyboardInterrupt:   # Ctrl-C / SIGTERM: the kernel may still be running the cell, and a request
            _abandon_pending_tasks()   # for its timings would wait until the cell ends
            raise
        except BaseException:
            self.chain.phases = self._read_phases()
            raise
        self.chain.phases = self._read_phases()

    def _read_phases(self) -> dict[str, float]:
        try:
            out = self._silent(expressions={"phases": PHASES_EXPR})["user_expressions"]["phases"]
            return {k: float(v) for k, v in json.loads(ast.literal_eval(out["data"]["text/plain"])).items()}
        except Exception:  # noqa: BLE001 - a dead kernel has no timings; the run's failure is reported elsewhere
            return {}


class ChainEngine(NBClientEngine):
    """papermill engine ``repro-chain``: executes a notebook in the kernel of a :class:`ChainKernel`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, chain=None, **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                             stderr_file=stderr_file)
        client = _ChainClient(nb_man, chain, **final)
        try:
            return client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()


papermill_engines.register(ENGINE, ChainEngine)


class ChainKernel:
    """A kernel kept alive across the runs of one chain (:func:`chain_key`)."""

    def __init__(self, kernel_name: str, key: Any, cwd: str, extra_arguments: list[str], startup_timeout: float = 60):
        from jupyter_client.manager import AsyncKernelManager
        from nbclient.util import run_sync

        self.key, self.used, self.phases = key, 0, {}
        t = time.perf_counter()
        self.km = AsyncKernelManager(kernel_name=kernel_name, **kernel_transport())
        run_sync(self.km.start_kernel)(extra_arguments=extra_arguments + ["--HistoryManager.hist_file=:memory:"],
                                       cwd=cwd)
        kc = self.km.client()
        kc.start_channels()
        try:
            run_sync(kc.wait_for_ready)(timeout=startup_timeout)
        except BaseException:
            self.close()
            raise
        finally:
            kc.stop_channels()
        self.start_s = time.perf_counter() - t   # process start and the kernel's first answer

    def alive(self) -> bool:
        from nbclient.util import run_sync

        return bool(self.km.has_kernel and run_sync(self.km.is_alive)())

    def execute(self, run: Run, stream: Any, extra_arguments: list[str]) -> None:
        """papermill-execute ``run`` into its partial executed notebook in this kernel."""
        import papermill

        self.phases = {}
        papermill.execute_notebook(
            str(run.notebook), str(run.partial), parameters=run.parameters, cwd=str(run.notebook.parent),
            kernel_name=self.km.kernel_name, progress_bar=False, log_output=False, stdout_file=stream,
            stderr_file=stream, engine_name=ENGINE, chain=self, extra_arguments=extra_arguments)

    def close(self) -> None:
        from nbclient.util import run_sync

        try:
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        finally:
            run_sync(self.km.cleanup_resources)()


class KernelPool:
    """At most one live :class:`ChainKernel`: reused while runs keep its key, replaced when the key changes.
    ``share=False``: a new kernel for every run (papermill's usual way; the sweep's ``chain=False``)."""

    def __init__(self, kernel_name: str, extra_arguments: list[str], share: bool = True):
        self.kernel_name, self.extra_arguments, self.share = kernel_name, extra_arguments, share
        self.current: ChainKernel | None = None

    def for_run(self, run: Run) -> tuple[ChainKernel, float]:
        """The kernel for ``run`` and the seconds spent starting it now (0.0 when it was reused)."""
        key = chain_key(run) if self.share else None
        if self.current is not None and (key is None or self.current.key != key or not self.current.alive()):
            self.close()
        if self.current is None:
            self.current = ChainKernel(self.kernel_name, key, str(run.notebook.parent), self.extra_arguments)
            return self.current, self.current.start_s
        return self.current, 0.0

    def close(self) -> None:
        if self.current is not None:
            kernel, self.current = self.current, None
            kernel.close()
