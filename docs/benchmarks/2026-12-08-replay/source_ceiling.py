"""Run from the repository root with .venv/bin/python and NEWSFLOW_DATA_DIR set; argument: N.
The champion is read from /tmp/replay/champion (make_champion.py beside this file builds it).
How well can the replay champion's recipe read the changed source with plenty of its labels?
minilm-l3, 1 epoch, 64 tokens, 3,000 AG News rows + N 20 Newsgroups train posts mapped to the
AG topics (the replay's SOURCE_GROUPS); scored on the replay's own pools (AG News test, 20NG test)."""
import json, random, sys, time
from pathlib import Path
from pipeline.cleaning import model_text
from pipeline.core.datasets import LabelledText, load_dataset
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from pipeline.core.stats import wilson_interval
from monitoring.replay.feed import SOURCE_GROUPS
from retraining.flow import FlowOptions, load_training_data, run_flow
from retraining.recipe import Recipe
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

s = Settings()
n_extra = int(sys.argv[1])
group_topic = {g: t for t, gs in SOURCE_GROUPS.items() for g in gs}
def mapped(split):
    return [LabelledText(r.id, r.title, r.body, group_topic[r.label]) for r in load_dataset("20newsgroups", split=split, data_dir=s.data_dir) if r.label in group_topic]
ng_train, ng_test = mapped("train"), mapped("test")
rng = random.Random(0)
extra = rng.sample(ng_train, min(n_extra, len(ng_train)))
ag_test = random.Random(1).sample(load_dataset("ag_news", split="test", data_dir=s.data_dir), 1500)
ng_eval = random.Random(2).sample(ng_test, min(1500, len(ng_test)))
def score(folder):
    clf = Classifier.load(Path(folder), warmup=False)
    out = {}
    for name, rows in (("ag", ag_test), ("ng", ng_eval)):
        pred = clf.predict([model_text(r.title, r.body) for r in rows])
        k = sum(p.topic == r.label for p, r in zip(pred, rows))
        out[name] = [k / len(rows), [round(b, 3) for b in wilson_interval(k, len(rows))], len(rows)]
    return out
res = {"champion": score("/tmp/replay/champion")}
if n_extra:
    t0 = time.time()
    recipe = Recipe(dataset="ag_news", base="minilm-l3", quantize=False, data=DataChoice(max_rows=3000), training=TrainConfig(epochs=1, max_length=64))
    splits = load_training_data(s, "ag_news", extra=extra, choice=recipe.data)
    r = run_flow(s, recipe, splits=splits, options=FlowOptions(baseline=False, register=False, card_speed=False, checkpoints=False))
    res[f"with_{n_extra}_ng"] = score(r.model_dir)
    res["train_s"] = round(time.time() - t0)
print(json.dumps(res))
json.dump(res, open(f"/tmp/replay/ceiling_{n_extra}.json", "w"))
