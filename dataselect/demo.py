"""The demo pool and target behind configs/rds.yaml, generated from templates with a fixed seed.

    python -m dataselect.demo [OUT_DIR] [--pool-size N] [--target-size N] [--seed S] [--force]

The pool mixes eight topics of instruction/response pairs; the target holds grade-school math word
problems, so a sensible selection puts the pool's math problems first.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam", "Maya", "Noah"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "tickets", "seashells", "cards", "oranges"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Lima", "Krakow", "Hanoi", "Cairo", "Oslo", "Perth"]
DISHES = ["lentil soup", "banana bread", "vegetable curry", "pancakes", "tomato sauce", "fried rice", "guacamole", "risotto"]
LANGS = ["Python", "JavaScript", "Go", "Rust", "Java"]
TASKS = ["reverse a string", "count words in a file", "check if a number is prime", "merge two sorted lists", "parse a CSV line", "compute a factorial"]
PLANTS = ["tomatoes", "basil", "roses", "lettuce", "peppers", "mint"]
EVENTS = [("the printing press", "Johannes Gutenberg", "around 1440"), ("the telephone", "Alexander Graham Bell", "in 1876"),
          ("penicillin", "Alexander Fleming", "in 1928"), ("the World Wide Web", "Tim Berners-Lee", "in 1989")]


def _math(rng: random.Random) -> tuple[str, str]:
    name, other, item = rng.choice(NAMES), rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(3, 40), rng.randint(2, 20), rng.randint(2, 9)
    kind = rng.randrange(4)
    if kind == 0:
        return (f"{name} has {a} {item}. {other} gives {name} {b} more. How many {item} does {name} have now?",
                f"{name} starts with {a} and gets {b} more, so {a} + {b} = {a + b}. The answer is {a + b}.")
    if kind == 1:
        return (f"A box holds {c} {item}. {name} buys {b} boxes. How many {item} does {name} buy in total?",
                f"Each box holds {c}, and there are {b} boxes, so {b} x {c} = {b * c}. The answer is {b * c}.")
    if kind == 2:
        total = a + b
        return (f"{name} had {total} {item} and shared {b} of them with {other}. How many {item} are left?",
                f"{total} - {b} = {a}. {name} has {a} {item} left. The answer is {a}.")
    price = rng.randint(2, 12)
    return (f"{item.capitalize()} cost ${price} each. If {name} buys {c} and pays with a ${price * c + b} bill, how much change does {name} get?",
            f"{c} {item} cost {c} x {price} = ${price * c}. The change is {price * c + b} - {price * c} = ${b}.")


def _cooking(rng: random.Random) -> tuple[str, str]:
    dish = rng.choice(DISHES)
    return (f"How do I make {dish} at home?",
            f"For {dish}, gather fresh ingredients, prepare them, and cook over medium heat, tasting and seasoning as you go. Serve warm.")


def _code(rng: random.Random) -> tuple[str, str]:
    lang, task = rng.choice(LANGS), rng.choice(TASKS)
    return (f"Write a {lang} function to {task}.",
            f"Here is a short {lang} function that does it: define the function, handle the edge cases, and return the result.")


def _travel(rng: random.Random) -> tuple[str, str]:
    city = rng.choice(CITIES)
    return (f"What should I see on a weekend trip to {city}?",
            f"In {city}, walk the old town, visit a local market, try the regional food and end the day at a viewpoint.")


def _garden(rng: random.Random) -> tuple[str, str]:
    plant = rng.choice(PLANTS)
    return (f"How often should I water {plant}?",
            f"Water {plant} when the top inch of soil feels dry, usually every two to three days in summer, less in cooler weather.")


def _history(rng: random.Random) -> tuple[str, str]:
    thing, person, when = rng.choice(EVENTS)
    return (f"Who invented {thing}, and when?", f"{thing[0].upper() + thing[1:]} is credited to {person}, {when}.")


def _health(rng: random.Random) -> tuple[str, str]:
    minutes = rng.choice([20, 30, 45])
    return ("How can I sleep better?",
            f"Keep a regular schedule, avoid screens for {minutes} minutes before bed, and keep the bedroom cool and dark.")


def _writing(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice(["the ocean", "autumn", "a city at night", "friendship", "the mountains"])
    return (f"Write a short poem about {topic}.", f"A few quiet lines on {topic}: light moves, time slows, and the world feels near.")


TOPICS = {"math": _math, "cooking": _cooking, "code": _code, "travel": _travel, "garden": _garden,
          "history": _history, "health": _health, "writing": _writing}


def make_demo(out_dir: Path, pool_size: int = 1200, target_size: int = 40, seed: int = 0) -> None:
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    topics = list(TOPICS)
    with open(out_dir / "pool.jsonl", "w", encoding="utf-8") as pool:
        for i in range(pool_size):
            topic = topics[i % len(topics)]
            prompt, response = TOPICS[topic](rng)
            pool.write(json.dumps({"id": f"pool-{i:05d}", "source": topic, "prompt": prompt, "response": response}) + "\n")
    with open(out_dir / "target.jsonl", "w", encoding="utf-8") as target:
        for i in range(target_size):
            prompt, response = _math(rng)
            target.write(json.dumps({"id": f"target-{i:03d}", "prompt": prompt, "response": response}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataselect.demo", description="Write the demo pool.jsonl and target.jsonl (deterministic).")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("configs/demo"),
                        help="folder to write pool.jsonl and target.jsonl into (default: configs/demo, the shipped copy)")
    parser.add_argument("--pool-size", type=int, default=1200, help="pool samples (default 1200)")
    parser.add_argument("--target-size", type=int, default=40, help="target samples (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0, as shipped)")
    parser.add_argument("--force", action="store_true", help="replace pool.jsonl / target.jsonl already in the folder")
    args = parser.parse_args(argv)
    if args.pool_size < 1 or args.target_size < 1:
        parser.error("--pool-size and --target-size must be at least 1")
    existing = [name for name in ("pool.jsonl", "target.jsonl") if (args.out_dir / name).exists()]
    if existing and not args.force:
        print(f"error: {args.out_dir} already holds {' and '.join(existing)}; pass --force to replace them", file=sys.stderr)
        return 2
    make_demo(args.out_dir, args.pool_size, args.target_size, args.seed)
    print(f"wrote {args.out_dir / 'pool.jsonl'} ({args.pool_size} samples) and {args.out_dir / 'target.jsonl'} ({args.target_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
