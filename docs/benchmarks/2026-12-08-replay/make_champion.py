"""The replay's champion: the quick demo's first model (minilm-l3, 1 epoch, 3,000 rows, 64 tokens, fp32)."""
import shutil, sys
from pathlib import Path
from pipeline.core.settings import Settings
from retraining.flow import FlowOptions, run_flow
from retraining.recipe import Recipe
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

s = Settings()
r = run_flow(s, Recipe(dataset="ag_news", base="minilm-l3", quantize=False,
                       data=DataChoice(max_rows=3000), training=TrainConfig(epochs=1, max_length=64)),
             options=FlowOptions(baseline=False, register=False, card_speed=False))
out = Path(sys.argv[1])
if out.exists():
    shutil.rmtree(out)
shutil.copytree(r.model_dir, out)
print("champion", out, r.summary.get("accuracy"))
