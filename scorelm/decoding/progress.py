"""Progress on long decoding: a tqdm bar on stderr fed by transformers' streamer hook (generate()
hands every step's tokens to it), saying the steps written of the batch's budget, the pieces
finished and tokens a second; nothing where quiet."""
from __future__ import annotations

import sys
import time


class Progress:
    """One bar a batch: start() before generate(), which then calls put() with the prompt and
    with each step's tokens (a row's after its end are padding), and end() at the end."""

    def __init__(self, what: str = "sampling", quiet: bool = False):
        self.what, self.quiet = what, quiet
        self.bar = None

    def start(self, rows: int, steps: int, stop_ids) -> "Progress | None":
        """Ready for a batch of `rows` sequences of at most `steps` new tokens; None where quiet
        (generate() then streams to nothing)."""
        if self.quiet:
            return None
        from tqdm import tqdm
        self.rows, self.stops, self.done, self.tokens = rows, set(stop_ids), set(), 0
        self.started = time.perf_counter()
        self.bar = tqdm(total=steps, desc=self.what, unit="step", file=sys.stderr, leave=False,
                        dynamic_ncols=True, mininterval=0.5)
        return self

    def put(self, tokens) -> None:
        if self.bar is None:
            return
        if tokens.dim() > 1:  # the prompt, before the first step
            self.started = time.perf_counter()
            return
        written = tokens.tolist()
        self.tokens += self.rows - len(self.done)
        self.done |= {row for row, token in enumerate(written) if token in self.stops}
        self.bar.update(1)
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        self.bar.set_postfix_str(f"pieces {len(self.done)}/{self.rows}, "
                                 f"{self.tokens / elapsed if elapsed > 0 else 0:.0f} tokens/s", refresh=False)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
