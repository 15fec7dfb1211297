"""Reading the raw data into one Arrow table of the columns the format needs, counting malformed rows.

JSONL is parsed block by block with pyarrow's multi-threaded reader. A block that fails to parse (bad
JSON, a field of the wrong type) is split in halves until the failing lines are isolated; those lines are
checked one by one in Python so each malformed row is counted with its reason. Nothing is dropped without
being counted.
"""
from __future__ import annotations

import json
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pj
import pyarrow.parquet as pq

from common.jobspec import ConfigError, DataError, log

MAX_EXAMPLES = 5
_BLOCK_BYTES = 8 << 20
_PY_LINES = 64  # below this many lines, a failing block is checked line by line
_WORKERS = 2
_ROW_RE = re.compile(r"in row (\d+)")


@dataclass
class Column:
    """A column the format needs: its name in the data and the Arrow type it must have."""

    name: str
    kind: str  # "string", "messages", "scalar" (a string or an integer: group and label columns)
    required: bool = True


@dataclass
class Malformed:
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, reason: str, where: str, text: str, n: int = 1) -> None:
        self.count += n
        self.reasons[reason] = self.reasons.get(reason, 0) + n
        if text and len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"where": where, "reason": reason, "text": text[:300]})


MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _arrow_type(col: Column, scalar_type: pa.DataType | None) -> pa.DataType:
    if col.kind == "string":
        return pa.string()
    if col.kind == "messages":
        return MESSAGES_TYPE
    return scalar_type or pa.string()


def source_files(source: str, file_format: str, input_dir: Path | None) -> list[Path]:
    """The files of a local or s3:// source (s3:// data was staged into CAMPAIGN_INPUT_DIR by the runner)."""
    if source.startswith("s3://"):
        if input_dir is None:
            raise ConfigError(f"data.source is {source} but CAMPAIGN_INPUT_DIR is not set; the node runner stages s3:// data there")
        base = Path(source.rstrip("/")).name
        root = input_dir / base if (input_dir / base).exists() else input_dir
    else:
        root = Path(source)
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and _format_of(p, file_format, strict=False) is not None)
        if files:
            return files
        raise DataError(f"no {file_format if file_format != 'auto' else 'JSONL, Parquet or CSV'} files in {root}")
    raise DataError(f"data source {source} not found (looked for {root})")


def _format_of(path: Path, file_format: str, strict: bool = True) -> str | None:
    if file_format != "auto":
        return file_format
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".parquet", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    if strict:
        raise ConfigError(f"cannot tell the format of {path}: set data.fileFormat to jsonl, parquet or csv")
    return None


def read_source(
    source: str, file_format: str, revision: str | None, columns: list[Column], input_dir: Path | None
) -> tuple[pa.Table, int, Malformed]:
    """Returns (table of the good rows with exactly `columns`, rows read in total, malformed rows)."""
    malformed = Malformed()
    if source.startswith("hf://"):
        table = _read_hub(source.removeprefix("hf://"), revision)
        good, total = _check_table(table, columns, malformed, where=source)
        return good, total, malformed
    tables: list[pa.Table] = []
    total = 0
    scalar_types: dict[str, pa.DataType] = {}
    for path in source_files(source, file_format, input_dir):
        fmt = _format_of(path, file_format)
        log(f"reading {path} ({fmt})")
        if fmt == "jsonl":
            table, n = _read_jsonl(path, columns, malformed, scalar_types)
        elif fmt == "parquet":
            table, n = _check_table(pq.read_table(path), columns, malformed, where=path.name)
        else:
            table, n = _read_csv(path, columns, malformed)
        tables.append(table)
        total += n
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return table, total, malformed


def _read_hub(dataset_id: str, revision: str | None) -> pa.Table:
    import datasets

    log(f"loading hub dataset {dataset_id} (revision {revision or 'default'})")
    loaded = datasets.load_dataset(dataset_id, revision=revision)
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise ConfigError(f"hub dataset {dataset_id} has no 'train' split (it has {sorted(loaded)})")
        loaded = loaded["train"]
    return loaded.data.table


def _check_table(table: pa.Table, columns: list[Column], malformed: Malformed, where: str) -> tuple[pa.Table, int]:
    """Selects and type-checks the needed columns of a columnar source; rows with nulls are malformed."""
    total = table.num_rows
    out: dict[str, pa.ChunkedArray] = {}
    for col in columns:
        if col.name not in table.column_names:
            if col.required:
                raise DataError(f"{where}: column {col.name!r} is missing (columns: {table.column_names})")
            out[col.name] = pa.chunked_array([pa.nulls(total, pa.string())])
            continue
        array = table[col.name]
        if col.kind == "string" and not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise DataError(f"{where}: column {col.name!r} has type {array.type}, expected strings")
        if col.kind == "string" and pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
        if col.kind == "messages":
            try:
                array = array.cast(MESSAGES_TYPE)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise DataError(f"{where}: column {col.name!r} is not a list of {{role, content}} messages: {err}") from err
        out[col.name] = array
    result = pa.table(out)
    return _drop_nulls(result, columns, malformed, where), total


def _drop_nulls(table: pa.Table, columns: list[Column], malformed: Malformed, where: str) -> pa.Table:
    """Rows where a required field is missing or null are malformed; each is counted once, by its first missing field."""
    missing = None
    for col in columns:
        if not col.required:
            continue
        null = pc.is_null(table[col.name])
        fresh = null if missing is None else pc.and_(null, pc.invert(missing))
        count = pc.sum(fresh).as_py() or 0
        if count:
            flat = fresh.combine_chunks() if isinstance(fresh, pa.ChunkedArray) else fresh
            reason = f"missing field {col.name!r}"
            for i in pc.indices_nonzero(flat).to_pylist()[:MAX_EXAMPLES]:
                malformed.add(reason, f"{where} record {i + 1}", json.dumps(table.slice(i, 1).to_pylist()[0], default=str))
                count -= 1
            if count:
                malformed.add(reason, where, "", n=count)
        missing = null if missing is None else pc.or_(missing, null)
    if missing is None:
        return table
    return table.filter(pc.invert(missing))


def _read_csv(path: Path, columns: list[Column], malformed: Malformed) -> tuple[pa.Table, int]:
    bad_rows: list[int] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append(1)
        malformed.add("wrong number of CSV fields", f"{path.name} line {row.number}", row.text or "")
        return "skip"

    convert = pcsv.ConvertOptions(
        column_types={c.name: pa.string() for c in columns if c.kind == "string"},
        strings_can_be_null=False,
        include_columns=[c.name for c in columns],
        include_missing_columns=True,
    )
    try:
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid), convert_options=convert)
    except pa.ArrowInvalid as err:
        raise DataError(f"{path.name}: cannot read CSV: {err}") from err
    good, n = _check_table(table, columns, malformed, where=path.name)
    return good, n + len(bad_rows)


# ---------------------------------------------------------------- JSONL


def _blocks(path: Path) -> Iterator[memoryview]:
    """Blocks of whole lines: zero-copy slices of a memory map, or decompressed chunks for .gz files."""
    if path.suffix == ".gz":
        stream = pa.input_stream(str(path), compression="detect")
        carry = b""
        while True:
            chunk = stream.read(_BLOCK_BYTES)
            data = carry + chunk
            if not chunk:
                if data:
                    yield memoryview(data)
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            yield memoryview(data)[: cut + 1]
    if path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(mm)
    start = 0
    while start < size:
        end = min(start + _BLOCK_BYTES, size)
        if end < size:
            cut = mm.rfind(b"\n", start, end)
            if cut < 0:
                cut = mm.find(b"\n", end)
            end = size if cut < 0 else cut + 1
        yield memoryview(mm)[start:end]
        start = end


def _read_jsonl(path: Path, columns: list[Column], malformed: Malformed, scalar_types: dict[str, pa.DataType]) -> tuple[pa.Table, int]:
    """Blocks are parsed two at a time (pyarrow releases the GIL); results are merged in file order."""
    from concurrent.futures import ThreadPoolExecutor

    tables: list[pa.Table] = []
    total = 0
    line_no = 0
    schema: pa.Schema | None = None

    def collect(result: BlockResult) -> None:
        nonlocal total, line_no
        parsed, n, bad, lines = result
        tables.extend(parsed)
        for reason, rel, text in bad:
            malformed.add(reason, f"{path.name} line {line_no + rel + 1}", text)
        total += n
        line_no += lines

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        pending = []
        for block in _blocks(path):
            if schema is None:
                schema = _infer_schema(bytes(block[: 1 << 20]), columns, scalar_types)
            pending.append(pool.submit(_parse_block, block, schema, columns))
            if len(pending) >= 2 * _WORKERS:
                collect(pending.pop(0).result())
        for future in pending:
            collect(future.result())
    if schema is None:
        raise DataError(f"{path} is empty")
    tables = [t for t in tables if t.num_rows]
    return (pa.concat_tables(tables) if tables else schema.empty_table()), total


# (tables, rows seen, malformed (reason, line index in the block, text), lines in the block)
BlockResult = tuple[list[pa.Table], int, list[tuple[str, int, str]], int]


def _infer_schema(block: bytes, columns: list[Column], scalar_types: dict[str, pa.DataType]) -> pa.Schema:
    """Types of 'scalar' columns (a group id may be a string or an integer) come from the first good lines."""
    for col in columns:
        if col.kind != "scalar" or col.name in scalar_types:
            continue
        for raw in block.splitlines()[:1000]:
            try:
                value = json.loads(raw).get(col.name)
            except (ValueError, AttributeError):
                continue
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                scalar_types[col.name] = pa.int64()
                break
            if isinstance(value, str):
                scalar_types[col.name] = pa.string()
                break
    return pa.schema([(c.name, _arrow_type(c, scalar_types.get(c.name))) for c in columns])


def _parse_block(view: memoryview, schema: pa.Schema, columns: list[Column]) -> BlockResult:
    """Parses whole lines; on a parse error at row r, line r is checked in Python and parsing goes on after it.

    pyarrow names the failing row when the block is parsed as one chunk, so a block with k bad lines costs
    about two parses, not one per line. Where that row cannot be trusted the block is halved instead.
    """
    import numpy as np

    n_lines = int(np.count_nonzero(np.frombuffer(view, dtype=np.uint8) == 10))
    if len(view) and view[-1] != 10:
        n_lines += 1
    bad: list[tuple[str, int, str]] = []
    try:
        table = _checked_parse(view, schema, columns, 0, bad)
        return [table], table.num_rows + len(bad), bad, n_lines
    except pa.ArrowInvalid as err:
        first_error = err
    block = bytes(view)
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    tables: list[pa.Table] = []
    total = 0
    offset = 0
    err: Exception | None = first_error
    while offset < len(lines):
        if err is None:
            try:
                before = len(bad)
                table = _checked_parse(b"\n".join(lines[offset:]) + b"\n", schema, columns, offset, bad)
                tables.append(table)
                return tables, total + table.num_rows + len(bad) - before, bad, n_lines
            except pa.ArrowInvalid as next_err:
                err = next_err
        match = _ROW_RE.search(str(err))
        err = None
        row = offset + int(match.group(1)) if match else -1
        if match is None or row >= len(lines) or any(not line.strip() for line in lines[offset:]) or _line_problem(lines[row], schema, columns) is None:
            sub, n, sub_bad = _bisect(lines[offset:], schema, columns, offset)
            return tables + sub, total + n, bad + sub_bad, n_lines
        if row > offset:
            sub, n, sub_bad = _bisect(lines[offset:row], schema, columns, offset)
            tables += sub
            total += n
            bad += sub_bad
        bad.append((_line_problem(lines[row], schema, columns) or "", row, lines[row].decode("utf-8", errors="replace")))
        total += 1
        offset = row + 1
    return tables, total, bad, n_lines


def _checked_parse(data: bytes | memoryview, schema: pa.Schema, columns: list[Column], first_line: int, bad: list[tuple[str, int, str]]) -> pa.Table:
    """Parses whole lines; rows missing a required field are moved to `bad` with their line."""
    table = _arrow_parse(data, schema)
    missing = None
    for col in columns:
        if col.required:
            null = pc.is_null(table[col.name])
            missing = null if missing is None else pc.or_(missing, null)
    if missing is None or not (pc.sum(missing).as_py() or 0):
        return table
    raw = bytes(data)
    # rows map to lines when the block has no blank line (blank lines are skipped by the parser)
    lines = [line for line in raw.split(b"\n") if line.strip()]
    flat = missing.combine_chunks() if isinstance(missing, pa.ChunkedArray) else missing
    line_of = [i for i, line in enumerate(raw.split(b"\n")) if line.strip()]
    for r in pc.indices_nonzero(flat).to_pylist():
        row = table.slice(r, 1).to_pylist()[0]
        field = next(c.name for c in columns if c.required and row.get(c.name) is None)
        bad.append((f"missing field {field!r}", first_line + line_of[r], lines[r].decode("utf-8", errors="replace")))
    return table.filter(pc.invert(missing))


def _arrow_parse(data: bytes | memoryview, schema: pa.Schema) -> pa.Table:
    return pj.read_json(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pj.ReadOptions(block_size=len(data) + 1, use_threads=False),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


def _bisect(lines: list[bytes], schema: pa.Schema, columns: list[Column], first_line: int) -> tuple[list[pa.Table], int, list[tuple[str, int, str]]]:
    if not lines:
        return [], 0, []
    if len(lines) > _PY_LINES:
        try:
            found: list[tuple[str, int, str]] = []
            table = _checked_parse(b"\n".join(lines) + b"\n", schema, columns, first_line, found)
            return [table], table.num_rows + len(found), found
        except pa.ArrowInvalid:
            mid = len(lines) // 2
            t1, n1, b1 = _bisect(lines[:mid], schema, columns, first_line)
            t2, n2, b2 = _bisect(lines[mid:], schema, columns, first_line + mid)
            return t1 + t2, n1 + n2, b1 + b2
    rows: list[dict[str, Any]] = []
    bad: list[tuple[str, int, str]] = []
    total = 0
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        total += 1
        text = raw.decode("utf-8", errors="replace")
        try:
            value = json.loads(raw)
        except ValueError as err:
            bad.append(("bad JSON", first_line + i, f"{text}  ({err})"))
            continue
        reason = _row_problem(value, schema, columns)
        if reason:
            bad.append((reason, first_line + i, text))
            continue
        rows.append({c.name: value.get(c.name) for c in columns})
    return ([pa.Table.from_pylist(rows, schema=schema)] if rows else []), total, bad


def _line_problem(raw: bytes, schema: pa.Schema, columns: list[Column]) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return "bad JSON"
    return _row_problem(value, schema, columns)


def _row_problem(value: Any, schema: pa.Schema, columns: list[Column]) -> str | None:
    if not isinstance(value, dict):
        return "not a JSON object"
    for col in columns:
        v = value.get(col.name)
        if v is None:
            if col.required:
                return f"missing field {col.name!r}"
            continue
        expected = schema.field(col.name).type
        if col.kind == "messages":
            ok = isinstance(v, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in v)
            if not ok:
                return f"field {col.name!r} is not a list of {{role, content}} messages"
        elif pa.types.is_string(expected) and not isinstance(v, str):
            return f"field {col.name!r} has type {type(v).__name__}, expected a string"
        elif pa.types.is_integer(expected) and (not isinstance(v, int) or isinstance(v, bool)):
            return f"field {col.name!r} has type {type(v).__name__}, expected an integer"
    return None
