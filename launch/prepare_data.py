r"""Converts a data set in any supported format to the project's npz and prints its summary.

  python launch/prepare_data.py --input=yeast/ --output=data/yeast.npz
  python launch/prepare_data.py --input=bibtex.arff --num_labels=159 --output=data/bibtex.npz
  python launch/prepare_data.py --input=Eurlex_train.txt --output=data/eurlex.npz
  python launch/prepare_data.py --input=table.csv --label_prefix=tag_ --output=data/table.npz
  python launch/prepare_data.py --input=yeast --data_dir=../shared/datasets   # summary only

Inputs: .npz, the MPVAE layout (directory or NAME_data.npy), Mulan/MEKA ARFF (dense or
sparse), libsvm / Extreme Classification text, CSV/TSV with a header row (labels by
--label_prefix or --num_labels; an optional `split` column), or a directory of NAME-train /
NAME-test files (see docs/data.md). The output holds X, Y, label_names, feature_names and, when
the input has one, split; `--config.dataset=NAME --config.data_dir=DIR` then finds DIR/NAME.npz.
"""

import sys
import warnings

from absl import app, flags

from cgmvae_jax import data

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "File, directory or data set name (looked up in --data_dir).")
flags.DEFINE_string("output", None, "npz file to write; without it only the summary is printed.")
flags.DEFINE_enum("format", "auto", list(data.FORMATS), "Input format (auto = detect).")
flags.DEFINE_string("data_dir", None, "Where a name is looked up (default $CGMVAE_DATA or ./data).")
flags.DEFINE_integer(
    "num_labels", 0, "Label count L for MPVAE, ARFF without XML, libsvm without header, CSV."
)
flags.DEFINE_enum(
    "label_location",
    "end",
    list(data.reading.LABEL_LOCATIONS),
    "ARFF/CSV with --num_labels: last or first L.",
)
flags.DEFINE_string("label_prefix", "", "CSV/TSV: columns whose name starts with this are labels.")
flags.DEFINE_string("xml", None, "ARFF: Mulan XML label header (default: STEM.xml beside it).")
flags.DEFINE_integer("meta_offset", 0, "MPVAE layout: leading non-label columns of each row.")
flags.DEFINE_integer("num_features", 0, "libsvm without header: F (0 = largest index + 1).")
flags.DEFINE_enum("index_base", "auto", ["auto", "0", "1"], "libsvm feature index base.")
flags.mark_flags_as_required(["input"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.DataWarning)
        try:
            ds = data.load_dataset(
                FLAGS.input,
                FLAGS.data_dir,
                format=FLAGS.format,
                meta_offset=FLAGS.meta_offset,
                num_labels=FLAGS.num_labels,
                label_location=FLAGS.label_location,
                label_prefix=FLAGS.label_prefix,
                xml_path=FLAGS.xml,
                num_features=FLAGS.num_features,
                index_base=None if FLAGS.index_base == "auto" else int(FLAGS.index_base),
            )
        except (data.DatasetNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(data.summary_table([ds]))
    if FLAGS.output:
        path = data.save_npz(ds, FLAGS.output)
        print(f"Written to {path}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
