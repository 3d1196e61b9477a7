"""Content-block numbering for stream decoders whose wire format has no blocks of its own (Chat
chunks, Gemini parts): deltas of one kind stay in the open block, a new kind closes it and opens
the next, numbered from 0 as the IR event grammar requires."""

from __future__ import annotations

from trigate.translate import ir


class BlockNumbering:
    __slots__ = ("_next", "_open", "_open_kind")

    def __init__(self) -> None:
        self._open = -1  # index of the open block, -1 when none
        self._open_kind: str | None = None
        self._next = 0  # index the next block gets

    def _close_block(self, out: list[ir.StreamEvent]) -> None:
        if self._open >= 0:
            out.append(ir.BlockStop(self._open))
            self._open = -1
            self._open_kind = None

    def _block(self, kind: ir.BlockKind, out: list[ir.StreamEvent]) -> int:
        """The open block's index if it is of ``kind``, else close it and start a new one."""
        if self._open_kind == kind:
            return self._open
        self._close_block(out)
        idx = self._next
        self._next += 1
        out.append(ir.BlockStart(idx, kind))
        self._open = idx
        self._open_kind = kind
        return idx
