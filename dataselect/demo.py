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
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Lima", "Krakow", "Hanoi", "Cairo", "Oslo", "Perth", "Seville", "Quito", "Busan",
          "Tbilisi", "Porto", "Hobart", "Montreal", "Marrakesh", "Ljubljana", "Valparaiso"]
TRIPS = ["a weekend", "three days", "a week", "one afternoon"]
INTERESTS = {"food": "the covered market and a cooking class", "history": "the old town and the city museum",
             "nature": "the parks and a day hike outside the city", "art": "the galleries and the street murals"}
DISHES = ["lentil soup", "banana bread", "vegetable curry", "pancakes", "tomato sauce", "fried rice", "guacamole", "risotto",
          "minestrone", "falafel", "shakshuka", "dumplings", "pad thai", "chili", "focaccia", "apple crumble"]
COOKS = [("on the stove", "medium heat"), ("in the oven", "a moderate oven"), ("in one pot", "a gentle simmer"), ("ahead for the week", "low heat")]
SERVINGS = [2, 4, 6, 8]
LANGS = ["Python", "JavaScript", "Go", "Rust", "Java", "C", "Ruby", "Kotlin"]
TASKS = ["reverse a string", "count words in a file", "check if a number is prime", "merge two sorted lists", "parse a CSV line",
         "compute a factorial", "find the largest element", "remove duplicates from a list", "check for a palindrome",
         "convert Celsius to Fahrenheit", "flatten a nested list", "count vowels", "sum the digits of a number", "validate an email address",
         "rotate an array"]
STYLES = ["short", "well-commented", "test-covered"]
PLANTS = ["tomatoes", "basil", "roses", "lettuce", "peppers", "mint", "strawberries", "lavender", "orchids", "ferns", "cucumbers",
          "rosemary", "succulents", "sunflowers"]
SEASONS = {"summer": "every two to three days", "spring": "twice a week", "autumn": "once a week", "winter": "every ten days or so"}
SPOTS = ["on a balcony", "in a garden bed", "on a windowsill", "in a greenhouse"]
EVENTS = [("the printing press", "Johannes Gutenberg", "around 1440"), ("the telephone", "Alexander Graham Bell", "in 1876"),
          ("penicillin", "Alexander Fleming", "in 1928"), ("the World Wide Web", "Tim Berners-Lee", "in 1989"),
          ("the light bulb", "Thomas Edison", "in 1879"), ("the steam engine", "James Watt", "in the 1760s"),
          ("the radio", "Guglielmo Marconi", "in the 1890s"), ("the airplane", "the Wright brothers", "in 1903"),
          ("the vaccine for smallpox", "Edward Jenner", "in 1796"), ("dynamite", "Alfred Nobel", "in 1867"),
          ("the periodic table", "Dmitri Mendeleev", "in 1869"), ("the telescope", "Hans Lippershey", "in 1608"),
          ("the battery", "Alessandro Volta", "in 1800"), ("the stethoscope", "Rene Laennec", "in 1816"),
          ("the jet engine", "Frank Whittle", "in the 1930s"), ("the transistor", "Bardeen, Brattain and Shockley", "in 1947")]
ASKS = ["Who invented {thing}, and when?", "When was {thing} invented?", "Tell me who came up with {thing}.", "What is the story behind {thing}?"]
FOR = {"for a school project": "a good starting point for a project", "in one sentence": "that is the short version",
       "for my grandfather": "a story worth telling", "for a quiz": "a classic quiz answer"}
HABITS = {"sleep better": "keep a regular schedule and avoid screens for {m} minutes before bed",
          "manage stress": "take {m} minutes a day for a walk or slow breathing",
          "improve my posture": "stand up and stretch every {m} minutes",
          "drink more water": "keep a bottle in sight and refill it every {m} minutes of work",
          "start exercising": "begin with {m} minutes of brisk walking most days",
          "focus at work": "work in blocks of {m} minutes with short breaks",
          "eat more vegetables": "add one vegetable to each meal and prepare them {m} minutes ahead",
          "cut down on caffeine": "replace one cup a day and wait {m} minutes after waking for the first"}
PEOPLE = ["a student", "a night-shift nurse", "a new parent", "an office worker", "a runner", "a retiree"]
MINUTES = [10, 20, 30, 45]
SUBJECTS = ["the ocean", "autumn", "a city at night", "friendship", "the mountains", "a rainy morning", "an old library", "the desert",
            "a lighthouse", "first snow", "a train journey", "a garden in spring", "the moon", "a busy kitchen", "a quiet harbour", "a market"]
FORMS = ["a short poem", "a haiku", "a limerick", "the opening line of a story"]
MOODS = ["hopeful", "wistful", "playful"]


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
    dish, (where, heat), people = rng.choice(DISHES), rng.choice(COOKS), rng.choice(SERVINGS)
    return (f"How do I make {dish} {where} for {people} people?",
            f"For {dish} for {people}, gather fresh ingredients, prepare them, and cook over {heat}, tasting and seasoning as you go. Serve warm.")


def _code(rng: random.Random) -> tuple[str, str]:
    lang, task, style = rng.choice(LANGS), rng.choice(TASKS), rng.choice(STYLES)
    return (f"Write a {style} {lang} function to {task}.",
            f"Here is a {style} {lang} function that does it: define the function, handle the edge cases, and return the result.")


def _travel(rng: random.Random) -> tuple[str, str]:
    city, trip, interest = rng.choice(CITIES), rng.choice(TRIPS), rng.choice(list(INTERESTS))
    return (f"I have {trip} in {city} and I love {interest}. What should I see?",
            f"With {trip} in {city}, start with {INTERESTS[interest]}, try the regional food and end the day at a viewpoint.")


def _garden(rng: random.Random) -> tuple[str, str]:
    plant, season, spot = rng.choice(PLANTS), rng.choice(list(SEASONS)), rng.choice(SPOTS)
    return (f"How often should I water {plant} {spot} in {season}?",
            f"Water {plant} {spot} when the top inch of soil feels dry: in {season} that is usually {SEASONS[season]}.")


def _history(rng: random.Random) -> tuple[str, str]:
    (thing, person, when), ask, purpose = rng.choice(EVENTS), rng.choice(ASKS), rng.choice(list(FOR))
    return f"{ask.format(thing=thing)[:-1]}, {purpose}?", f"{thing[0].upper() + thing[1:]} is credited to {person}, {when}: {FOR[purpose]}."


def _health(rng: random.Random) -> tuple[str, str]:
    goal, person, minutes = rng.choice(list(HABITS)), rng.choice(PEOPLE), rng.choice(MINUTES)
    return (f"As {person}, how can I {goal}?", f"As {person}, {HABITS[goal].format(m=minutes)}, and keep it up for a few weeks.")


def _writing(rng: random.Random) -> tuple[str, str]:
    subject, form, mood = rng.choice(SUBJECTS), rng.choice(FORMS), rng.choice(MOODS)
    return (f"Write {form} about {subject}, {mood} in tone.",
            f"{form[0].upper() + form[1:]} on {subject}, {mood}: light moves, time slows, and the world feels near.")


TOPICS = {"math": _math, "cooking": _cooking, "code": _code, "travel": _travel, "garden": _garden,
          "history": _history, "health": _health, "writing": _writing}
FRESH_TRIES = 50  # draws of a topic's template to find a sample the pool does not hold yet


def _fresh(topic: str, rng: random.Random, seen: set[tuple[str, str]]) -> tuple[str, str]:
    """A sample of the topic not in `seen` yet (a repeat only once a topic's templates run out)."""
    for _ in range(FRESH_TRIES):
        sample = TOPICS[topic](rng)
        if sample not in seen:
            break
    seen.add(sample)
    return sample


def make_demo(out_dir: Path, pool_size: int = 1200, target_size: int = 40, seed: int = 0) -> None:
    """Write pool.jsonl (the eight topics in turn, no sample twice while the templates allow) and target.jsonl
    (math word problems, none of them in the pool) into `out_dir`."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    topics = list(TOPICS)
    seen: set[tuple[str, str]] = set()
    with open(out_dir / "pool.jsonl", "w", encoding="utf-8") as pool:
        for i in range(pool_size):
            topic = topics[i % len(topics)]
            prompt, response = _fresh(topic, rng, seen)
            pool.write(json.dumps({"id": f"pool-{i:05d}", "source": topic, "prompt": prompt, "response": response}) + "\n")
    with open(out_dir / "target.jsonl", "w", encoding="utf-8") as target:
        for i in range(target_size):
            prompt, response = _fresh("math", rng, seen)
            target.write(json.dumps({"id": f"target-{i:03d}", "prompt": prompt, "response": response}) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m dataselect.demo`: write the demo pool and target; returns the exit code."""
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
