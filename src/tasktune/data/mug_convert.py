"""AliMeeting4MUG meetings -> instruction rows (Alpaca: id, instruction, input, output) for `task: sft`.

Input: the published CSV (`idx`, `content` = one meeting as JSON; see the project's MUG format
notes) or a jsonl of the same meeting objects. Tasks:
- title (TTG): one row per topic segment: its transcript as `[speaker]: text` lines -> the first
  annotator's title (every candidate title is kept in `references`).
- summary (ES, topic level): one row per topic segment, lines numbered -> the first candidate's key
  sentences, one per line, in meeting order.
- segmentation (TS): windows of the meeting, lines numbered -> the ids of the sentences that end a
  topic inside the window, comma-separated ("无" when none).
- action (AID): windows of the meeting, lines numbered -> the ids of action-item sentences ("无").
- keyphrase (KPE): only for files whose meetings carry `keyphrases`; the published format has none.

Long inputs are windowed at whole lines of at most `max_chars` characters; a topic segment longer
than that keeps its first `max_chars` (its rows and characters cut are counted in the report).

Example:
    mug_rows("dev.csv", "title", max_chars=3000)  # -> (rows, counts, left-out items)
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from tasktune.errors import UserError

TASKS = ("title", "summary", "segmentation", "action", "keyphrase")
INSTRUCTIONS = {
    "title": "你是一个专业的会议助手。请根据以下会议内容片段，生成一个简洁准确的主题标题。",
    "summary": "请从以下会议片段中抽取最能概括其主题的关键句，按原文逐行输出。",
    "segmentation": "以下是会议记录的一段，每句前有编号。请找出每个话题结束处的句子编号，用逗号分隔；没有则输出“无”。",
    "action": "以下是会议记录的一段，每句前有编号。请找出提出待办事项的句子编号，用逗号分隔；没有则输出“无”。",
    "keyphrase": "请从以下会议记录中提取关键词，用逗号分隔。",
}
NONE = "无"


def read_meetings(path: str) -> list[dict]:
    """The meeting objects of a MUG CSV (`content` column) or jsonl file; UserError naming the bad line."""
    meetings = []
    if path.endswith(".csv"):
        csv.field_size_limit(sys.maxsize)  # one cell holds a whole meeting
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if "content" not in (reader.fieldnames or []):
                raise UserError(f"{path}: no 'content' column (columns: {reader.fieldnames}); is it a MUG split file?")
            cells = [(i + 2, row["content"]) for i, row in enumerate(reader)]
    else:
        cells = [(i + 1, line) for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines())
                 if line.strip()]
    for line, cell in cells:
        try:
            meeting = json.loads(cell) if isinstance(cell, str) else cell
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {line}: the meeting is not valid JSON ({exc.msg})") from None
        if not isinstance(meeting, dict) or not meeting.get("sentence_list"):
            raise UserError(f"{path} line {line}: a meeting needs a non-empty sentence_list")
        meetings.append(meeting)
    return meetings


def _line(s: dict, numbered: bool) -> str:
    return (f"[{s['id']}] " if numbered else "") + f"[{s['speaker']}]: {s['s']}"


def _windows(lines: list[str], max_chars: int) -> list[tuple[int, int]]:
    """(start, end) ranges of whole lines, each at most max_chars characters (a longer line stands alone)."""
    out, start, size = [], 0, 0
    for i, line in enumerate(lines):
        if i > start and size + len(line) + 1 > max_chars:
            out.append((start, i))
            start, size = i, 0
        size += len(line) + 1
    out.append((start, len(lines)))
    return out


def _segments(meeting: dict) -> list[tuple[list[dict], dict]]:
    """(sentences, annotation) of each topic segment, in order."""
    sentences = meeting["sentence_list"]
    position = {int(s["id"]): i for i, s in enumerate(sentences)}
    out, start = [], 0
    for seg in meeting.get("topic_segment_ids") or []:
        end = position.get(int(seg["id"]))
        if end is None:
            continue
        out.append((sentences[start:end + 1], seg))
        start = end + 1
    return out


def _topic_rows(meeting: dict, task: str, max_chars: int, counts: dict) -> list[dict]:
    rows = []
    for k, (sents, seg) in enumerate(_segments(meeting)):
        candidates = [c for c in seg.get("candidate") or [] if c.get("title") or c.get("key_sentence")]
        if not candidates:
            continue
        lines = [_line(s, task == "summary") for s in sents]
        kept = _windows(lines, max_chars)[0][1]  # the segment's first window: its start is kept
        if kept < len(lines):
            counts["cut"] += 1
            counts["chars_cut"] += sum(len(x) + 1 for x in lines[kept:])
        text = "\n".join(lines[:kept])
        if task == "title":
            output, extra = candidates[0]["title"], {"references": [c["title"] for c in candidates if c.get("title")]}
        else:
            keys = {str(x) for x in candidates[0].get("key_sentence") or []}
            picked = [s["s"] for s in sents[:kept] if str(s["id"]) in keys]
            if not picked:
                continue
            output, extra = "\n".join(picked), {}
        rows.append({"id": f"{meeting.get('meeting_key', 'm')}-t{k}", "instruction": INSTRUCTIONS[task],
                     "input": "会议内容：\n" + text, "output": output, **extra})
    return rows


def _window_rows(meeting: dict, task: str, max_chars: int) -> list[dict]:
    sentences = meeting["sentence_list"]
    key = "topic_segment_ids" if task == "segmentation" else "action_ids"
    marked = {int(x["id"]) for x in meeting.get(key) or []}
    lines = [_line(s, True) for s in sentences]
    rows = []
    for w, (start, end) in enumerate(_windows(lines, max_chars)):
        ids = [str(s["id"]) for s in sentences[start:end] if int(s["id"]) in marked]
        rows.append({"id": f"{meeting.get('meeting_key', 'm')}-w{w}", "instruction": INSTRUCTIONS[task],
                     "input": "会议内容：\n" + "\n".join(lines[start:end]), "output": ",".join(ids) or NONE})
    return rows


def mug_rows(path: str, task: str | None, max_chars: int = 3000) -> tuple[list[dict], dict, list[dict]]:
    """(rows, counts, left-out items) of one MUG task from a raw meeting file."""
    if task not in TASKS:
        raise UserError(f"--from mug needs --task, one of {', '.join(TASKS)}")
    if max_chars < 100:
        raise UserError(f"--max-chars {max_chars} is too small for a meeting window; use at least 100 (e.g. 3000)")
    meetings = read_meetings(path)
    counts = {"meetings": len(meetings), "rows": 0, "cut": 0, "chars_cut": 0, "task": task, "max_chars": max_chars}
    rows = []
    for meeting in meetings:
        if task == "keyphrase":
            if not meeting.get("keyphrases"):
                raise UserError(f"{path}: meeting {meeting.get('meeting_key')} has no keyphrases; the published MUG "
                                "files carry none, so --task keyphrase needs a file that adds them")
            text = "\n".join(_line(s, False) for s in meeting["sentence_list"])
            counts["cut"] += len(text) > max_chars
            counts["chars_cut"] += max(0, len(text) - max_chars)
            rows.append({"id": meeting.get("meeting_key"), "instruction": INSTRUCTIONS[task],
                         "input": "会议内容：\n" + text[:max_chars], "output": ",".join(meeting["keyphrases"])})
        elif task in ("title", "summary"):
            rows += _topic_rows(meeting, task, max_chars, counts)
        else:
            rows += _window_rows(meeting, task, max_chars)
    counts["rows"] = len(rows)
    return rows, counts, []
