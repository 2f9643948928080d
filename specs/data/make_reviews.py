"""Write reviews.csv and reviews_test.csv for review_sentiment.nnspec: short product reviews, each
labelled "positive" or "negative" -- a deterministic text task small enough to ship.

A review is one to three sentences: a neutral one about the purchase ("I bought this kettle in
May."), and one or two that judge it with a word of praise or complaint ("The kettle is
reliable."), sometimes negated ("It is not reliable at all!"), which flips the judgement. The label
is the judgement of the judging sentences (they always agree). Capitals, punctuation and filler
words vary, so the model has to find the words that matter -- and, for "not", their order.

    reviews.csv       400 rows: review,label   (the training file)
    reviews_test.csv  150 rows, from another seed (held out: the validation data)

Run from anywhere: ``python specs/data/make_reviews.py``. The output is identical on every run.
"""
from __future__ import annotations

import csv
import io
import random
from pathlib import Path

ITEMS = ["kettle", "lamp", "backpack", "blender", "jacket", "keyboard", "tent", "toaster", "chair",
         "headset", "drill", "umbrella"]
PRAISE = ["great", "excellent", "sturdy", "reliable", "comfortable", "quiet", "lovely", "perfect", "fantastic",
          "solid", "durable", "brilliant"]
COMPLAINT = ["terrible", "awful", "flimsy", "broken", "useless", "noisy", "disappointing", "cheap", "horrible",
             "fragile", "faulty", "poor"]
NEUTRAL = ["I bought this {item} in {month}.", "The {item} arrived on {day}.", "My {who} recommended this {item}.",
           "We use the {item} every {day}.", "Ordered the {item} as a gift for my {who}.",
           "This is my second {item} from this shop.", "I have had the {item} for {n} weeks now."]
JUDGE = ["The {item} is {adv}{word}.", "It is {adv}{word}!", "Honestly, {adv}{word}.", "Really {word} {item}.",
         "Quality is {adv}{word}.", "Overall the {item} feels {adv}{word}."]
NEGATED = ["The {item} is not {word} at all.", "It is not {word}!", "Honestly, not {word}.",
           "Quality is not {word}.", "Overall the {item} does not feel {word}."]
MONTHS = ["January", "March", "May", "July", "September", "November"]
DAYS = ["Monday", "Tuesday", "Friday", "Saturday", "Sunday"]
WHO = ["sister", "brother", "neighbour", "colleague", "friend", "father"]
ADVERBS = ["", "", "very ", "quite ", "really ", "so "]


def _sentence(rng: random.Random, positive: bool, item: str) -> str:
    negate = rng.random() < 0.3
    # a negated word of the other side: "not flimsy" praises, "not sturdy" complains
    words = PRAISE if positive != negate else COMPLAINT
    template = rng.choice(NEGATED if negate else JUDGE)
    return template.format(item=item, word=rng.choice(words), adv=rng.choice(ADVERBS))


def review(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    item = rng.choice(ITEMS)
    parts = [_sentence(rng, positive, item) for _ in range(rng.choice((1, 1, 2)))]
    if rng.random() < 0.8:
        parts.insert(rng.randrange(len(parts) + 1),
                     rng.choice(NEUTRAL).format(item=item, month=rng.choice(MONTHS), day=rng.choice(DAYS),
                                                who=rng.choice(WHO), n=rng.randint(2, 9)))
    text = " ".join(parts)
    if rng.random() < 0.15:
        text = text.upper()  # some people shout; lowercase=true reads them the same
    return text, "positive" if positive else "negative"


def make(n: int, seed: int) -> str:
    """The CSV text of ``n`` reviews (a header row, then review,label)."""
    rng = random.Random(seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["review", "label"])
    for _ in range(n):
        w.writerow(review(rng))
    return buf.getvalue()


FILES = {"reviews.csv": (400, 12), "reviews_test.csv": (150, 13)}


def write() -> None:
    for name, (n, seed) in FILES.items():
        out = Path(__file__).with_name(name)
        out.write_text(make(n, seed), encoding="utf-8")
        print(f"wrote {out}: {n} reviews")


if __name__ == "__main__":
    write()
