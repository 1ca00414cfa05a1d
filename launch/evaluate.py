r"""Scores a trained model on a split, or predicts labels for a new features file.

  # metrics of the best epoch on the test split (every threshold protocol)
  python launch/evaluate.py --workdir=runs/yeast --split=test --output=runs/yeast/test.csv

  # probabilities and top-k label names for new rows (.npy, .npz with X, .csv or .tsv)
  python launch/evaluate.py --workdir=runs/yeast --features=new_rows.npy --output=pred.csv

--workdir is a finished training workdir or a directory written by `Model.save`; predicting
new rows needs nothing else (the model record holds the standardisation statistics, label
names and thresholds), from any directory. Scoring a split reads the data set again from the
path recorded in the run's config. With several seeds the probabilities are averaged.
"""

import json
import sys

from absl import app, flags

from cgmvae_jax import api, data, model_file

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training workdir or a saved model directory.")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to score.")
flags.DEFINE_string("features", None, "Features to predict for (.npy, .npz with X, .csv, .tsv).")
flags.DEFINE_string("output", None, "CSV file for probabilities and top-k label names.")
flags.DEFINE_integer("top_k", 5, "Label names listed per row in the CSV.")
flags.DEFINE_float(
    "threshold",
    None,
    "Threshold for the CSV's predicted labels (default: the run's validation-tuned threshold).",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        model = api.load(FLAGS.workdir)
        threshold = model.threshold if FLAGS.threshold is None else FLAGS.threshold
        if FLAGS.features:
            x = data.read_features(FLAGS.features, model.num_features)
            probs = model.predict_proba(x)
            print(f"Predicted {len(x)} rows of {FLAGS.features}.")
        else:
            scores, probs = api.score_split(model, FLAGS.split)
            print(json.dumps({"split": FLAGS.split, "threshold": threshold, **scores}, indent=2))
        if FLAGS.output:
            api.write_predictions(FLAGS.output, probs, model.label_names, threshold, FLAGS.top_k)
            print(f"Wrote {FLAGS.output}")
    except (OSError, ValueError, model_file.ModelFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
