"""Synthetic field records (English and Chinese) for extractive QA tests: cue words precede each value,
so a tiny model learns them in a few steps; some fields are null, some records are long."""

from __future__ import annotations

import random

NAMES = ["Alice Smith", "Bob Stone", "Carol King", "Dan Moore", "张伟", "李娜", "王芳", "刘洋"]
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "北京", "上海", "成都", "杭州"]
TITLES = ["engineer", "teacher", "nurse", "pilot", "工程师", "教师", "护士", "司机"]
FILLER_EN = ["The weather was calm.", "Nothing else happened.", "The office opened late.", "Coffee was served."]
FILLER_ZH = ["天气很好。", "没有别的事。", "办公室很晚开门。", "大家喝了茶。"]
QUESTIONS = {"name": "Who is the person?", "city": "Which city?", "title": "What is the job?"}


def make_records(n: int, seed: int = 0, long_every: int = 4) -> list[dict]:
    """{id, text, fields: {name, city, title}}; about one field in six is null (its sentence left out)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        zh = i % 2 == 1
        values = {"name": rng.choice(NAMES[4:] if zh else NAMES[:4]),
                  "city": rng.choice(CITIES[4:] if zh else CITIES[:4]),
                  "title": rng.choice(TITLES[4:] if zh else TITLES[:4])}
        fields = {k: (None if rng.random() < 0.17 else v) for k, v in values.items()}
        if zh:
            parts = [f"姓名：{fields['name']}。" if fields["name"] else "",
                     f"城市：{fields['city']}。" if fields["city"] else "",
                     f"职务：{fields['title']}。" if fields["title"] else ""]
            filler = FILLER_ZH
        else:
            parts = [f"Name: {fields['name']}." if fields["name"] else "",
                     f"City: {fields['city']}." if fields["city"] else "",
                     f"Job: {fields['title']}." if fields["title"] else ""]
            filler = FILLER_EN
        pad = [rng.choice(filler) for _ in range(12 if i % long_every == 0 else 2)]
        sentences = [p for p in parts if p] + pad
        rng.shuffle(sentences)
        records.append({"id": f"rec{i}", "text": " ".join(sentences), "fields": fields})
    return records


def qa_rows(records: list[dict]) -> list[dict]:
    """One QA row per record and field, the answer located in the text (null fields: no answer)."""
    rows = []
    for rec in records:
        for field, question in QUESTIONS.items():
            value = rec["fields"][field]
            answers = [{"text": value, "start": rec["text"].index(value)}] if value else []
            rows.append({"id": f"{rec['id']}:{field}", "question": question, "context": rec["text"],
                         "answers": answers, "field": field, "record_id": rec["id"]})
    return rows


def corpus() -> list[str]:
    recs = make_records(80, seed=99)
    return [r["text"] for r in recs] + list(QUESTIONS.values())
