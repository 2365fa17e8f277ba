"""Write examples/data/reports.jsonl: synthetic personnel reports (Chinese and English) with field values.

Each record is {id, text, fields: {name, alias, title, organization, date}}; a field the text does
not mention is null (about one in eight), and phrasing varies per field so that a model has to read,
not count. The names, places and sentences are invented for this example.

Usage: python examples/make_reports.py [--records 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"]
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平", "刚", "建华", "晓东"]
ALIASES = ["老{s}", "小{g}", "阿{g}", "{s}工", "大{g}"]
TITLES = ["工程师", "项目经理", "会计", "教师", "医生", "销售主管", "司机", "研究员", "律师", "设计师"]
ORGS = ["华信科技", "东方医院", "长江物流", "蓝海设计院", "明德中学", "天成律师事务所", "北辰研究所", "星河贸易"]
EN_FIRST = ["Alice", "Brian", "Chloe", "David", "Emma", "Frank", "Grace", "Henry", "Ivy", "Jack"]
EN_LAST = ["Walker", "Brooks", "Hayes", "Foster", "Reed", "Coleman", "Price", "Bennett"]
EN_TITLES = ["engineer", "project manager", "accountant", "teacher", "nurse", "sales lead", "researcher"]
EN_ORGS = ["Northwind Labs", "Riverside Clinic", "Harbor Logistics", "Maple School", "Summit Legal"]

ZH = {"name": ["当事人{v}，", "{v}同志", "姓名：{v}。", "本报告涉及{v}。"],
      "alias": ["别名{v}，", "人称“{v}”。", "同事们叫他{v}。"],
      "title": ["现任{v}。", "职务为{v}。", "担任{v}一职。"],
      "organization": ["就职于{v}。", "工作单位：{v}。", "目前在{v}工作。"],
      "date": ["{v}入职。", "于{v}登记。", "记录日期{v}。"]}
EN = {"name": ["Subject: {v}.", "This report concerns {v}.", "{v} was interviewed."],
      "alias": ["Known as {v} at work.", "Colleagues call this person {v} at work."],
      "title": ["Job title: {v}.", "Position: {v}."],
      "organization": ["Employed by {v}.", "Employer: {v}."],
      "date": ["Joined on {v}.", "Recorded {v}."]}
FILLER_ZH = ["工作表现稳定。", "近期无异常情况。", "家庭情况良好。", "参加过安全培训。", "本季度考核合格。"]
FILLER_EN = ["Performance is steady.", "No incidents this quarter.", "Completed the safety course."]


def _values(rng: random.Random, zh: bool) -> dict[str, str]:
    if zh:
        s, g = rng.choice(SURNAMES), rng.choice(GIVEN)
        return {"name": s + g, "alias": rng.choice(ALIASES).format(s=s, g=g[-1]), "title": rng.choice(TITLES),
                "organization": rng.choice(ORGS),
                "date": f"{rng.randint(2015, 2025)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"}
    first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
    return {"name": f"{first} {last}", "alias": f"{first[0]}.{last[0]}.", "title": rng.choice(EN_TITLES),
            "organization": rng.choice(EN_ORGS),
            "date": f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}


def make_reports(n: int, seed: int = 0) -> list[dict]:
    """`n` records, three in four Chinese; seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        zh = rng.random() < 0.75
        values = _values(rng, zh)
        fields = {k: (None if rng.random() < 0.12 else v) for k, v in values.items()}
        templates, filler = (ZH, FILLER_ZH) if zh else (EN, FILLER_EN)
        parts = [rng.choice(templates[k]).format(v=v) for k, v in fields.items() if v]
        parts += rng.sample(filler, 2)
        rng.shuffle(parts)
        out.append({"id": f"report-{i:04d}", "text": ("" if zh else " ").join(parts), "fields": fields})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "data" / "reports.jsonl"))
    a = p.parse_args()
    rows = make_reports(a.records, a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} records -> {a.out}")


if __name__ == "__main__":
    main()
