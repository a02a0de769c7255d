"""The `hashidx` command line: parses arguments, calls the library, prints; errors are one line."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from hashidx.errors import HashidxError
from hashidx.io.progress import set_quiet, warn
from hashidx.version import __version__


def _one_line_errors(fn):
    """Turn any failure into 'error: ...' on stderr and exit 1; --debug re-raises for the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except HashidxError as exc:
            if ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted; no output was left half-written", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader stopped early (`hashidx info FILE | head`): not a failure to report. Point stdout
            # at /dev/null so the interpreter's final flush does not raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # the last line of defence: no tracebacks without --debug
            if ctx.obj.get("debug"):
                raise
            if isinstance(exc, OSError) and exc.filename:
                from hashidx.io.atomic import output_error

                known = output_error(exc, exc.filename)  # a full disk or the like outside an atomic write
                if known is not None:
                    click.echo(f"error: {known}", err=True)
                    sys.exit(1)
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True
            )
            sys.exit(1)

    return wrapper


class _SectionOption(click.Option):
    """An option listed in --help under its own heading (the Ray engine's, shared by several commands)."""

    def __init__(self, *args, section: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


class _Sectioned(click.Command):
    """--help lists the command's own options first, then each section's under its heading."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", "Options"), []).append(record)
        for heading, records in sections.items():
            with formatter.section(heading):
                formatter.write_dl(records)


class _PipelineOrder(click.Group):
    """List commands in the order a pipeline uses them, not alphabetically."""

    command_class = _Sectioned

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_PipelineOrder, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hashidx")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, debug: bool) -> None:
    """Asymmetric deep hashing (AHCL) for remote-sensing image retrieval, on FAISS binary indexes.

    \b
    Pipeline:  features → train → build-index → (add) → query (--html gallery) / evaluate
    Feedback:  query INDEX EXAMPLES.tsv; learn INDEX --marks MARKS.tsv -o OUT; serve INDEX --learn-dir DIR
    Data:      hashidx datasets list; hashidx datasets download ucmerced --root data
    Try it:    hashidx demo  (or: hashidx demo --data data/ucmerced --views 1)
    Inspect:   hashidx info FILE
    """
    ctx.obj = {"debug": debug}
    set_quiet(quiet)
    # PIL logs its own decoding complaints; hashidx reports each bad file once, as a one-line error.
    logging.getLogger("PIL").setLevel(logging.CRITICAL)


ON_ERROR_OPTION = click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="An unreadable image: stop with its path (fail), or leave it out, list it and go on (skip).",
)


def _report_skipped(skipped: list[tuple[str, str]], where: str) -> None:
    """Every skipped file on stderr, then a count: what --on-error skip promises."""
    for _, reason in skipped:
        click.echo(f"skipped: {reason}", err=True)
    if skipped:
        click.echo(f"warning: {len(skipped)} unreadable image(s) left out ({where})", err=True)


VIEWS_OPTION = click.option(
    "--views",
    type=click.Choice(["1", "4", "8"]),
    default="8",
    show_default=True,
    callback=lambda c, p, v: int(v),
    help="Average features over orientations: 1 as is, 4 rotations, 8 rotations x flip (8x the backbone time).",
)


LABELS_OPTION = click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Multi-label annotations of DATA's images instead of class folders: a table in the UC Merced "
    "multi-label layout (header IMAGE\\LABEL<TAB>name..., 0/1 columns) or path<TAB>label1,label2 lines.",
)


def _no_wait(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    from hashidx.io.locks import set_wait

    set_wait(not value)


NO_WAIT_OPTION = click.option(
    "--no-wait",
    is_flag=True,
    expose_value=False,
    callback=_no_wait,
    help="If another hashidx is writing the same output, fail at once instead of waiting for it.",
)
RASTER_SECTION = "Rasters (GeoTIFF and every format GDAL reads)"
BANDS_OPTION = click.option(
    "--bands",
    cls=_SectionOption,
    section=RASTER_SECTION,
    default=None,
    metavar="LIST",
    help="Raster bands to read, in order: 1-based numbers and ranges (4,3,2 is Sentinel-2 true colour; "
    "4,3,2,1,5-13 all 13 with R, G, B first) or the file's band names. The first three listed take the "
    "pretrained R, G, B filters, others start from their mean. [default: a file's RGB; required for other "
    "multi-band rasters]",
)
MODEL_BANDS_OPTION = click.option(
    "--bands",
    cls=_SectionOption,
    section=RASTER_SECTION,
    default=None,
    metavar="LIST",
    help="Images are read with the model's bands and scaling; --bands may only restate them, or, for a model "
    "of each file's RGB, name which 3 bands of a multi-band raster are R, G, B (NAIP: 1,2,3).",
)
SCALE_OPTION = click.option(
    "--scale",
    cls=_SectionOption,
    section=RASTER_SECTION,
    default=None,
    metavar="auto|LO:HI[,LO:HI...]|FILE",
    help="One radiometric scaling for the whole dataset, recorded for every later image: auto (8-bit /255; "
    "other types: 2nd-98th percentile per band over a sample of the images), LO:HI for all bands or one per "
    "band, or a feature cache / model.pt whose bands and scaling to reuse. [default: auto]",
)
TILE_OPTION = click.option(
    "--tile",
    "tile",
    cls=_SectionOption,
    section=RASTER_SECTION,
    default=None,
    metavar="SIZE[:STRIDE]",
    help="Cut each raster into SIZE x SIZE px chips every STRIDE px (default: SIZE), read as windows on "
    "demand; each chip keeps its scene, window and footprint.",
)
MIN_VALID_OPTION = click.option(
    "--min-valid",
    cls=_SectionOption,
    section=RASTER_SECTION,
    type=float,
    default=0.5,
    show_default=True,
    help="With --tile: skip chips with less than this share of valid pixels (no-data, alpha, mask).",
)


def _options(*options):
    """Several click options as one decorator, in the order they are listed (in --help too)."""

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f

    return apply


# How DATA's images are read (features, train), and how query/added images are (the model's choice).
READING_OPTIONS = _options(BANDS_OPTION, SCALE_OPTION, TILE_OPTION, MIN_VALID_OPTION)
SOURCE_SCALE_OPTION = click.option(
    "--scale",
    cls=_SectionOption,
    section=RASTER_SECTION,
    default=None,
    metavar="auto|LO:HI[,LO:HI...]",
    help="Read these images with another scaling than the model's, for pixels it was not made for (16-bit or "
    "float rasters into an 8-bit model, another sensor): LO:HI for all bands or one per band, or auto (2nd-98th "
    "percentile per band over a sample of these images). [default: the model's]",
)
MODEL_READING_OPTIONS = _options(TILE_OPTION, MIN_VALID_OPTION, MODEL_BANDS_OPTION, SOURCE_SCALE_OPTION)


def _tiling(tile: str | None, min_valid: float):
    if tile is None:
        return None
    from hashidx.data.chips import Tiling

    return Tiling.parse(tile, min_valid)


ENGINE_SECTION = "Engine (--engine ray: pip install 'hashidx[ray]')"
ENGINE_OPTIONS = _options(
    click.option(
        "--engine",
        cls=_SectionOption,
        section=ENGINE_SECTION,
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the network passes (and searches) run: in this process, or on Ray workers; the outputs are "
        "the same.",
    ),
    click.option(
        "--ray-address",
        cls=_SectionOption,
        section=ENGINE_SECTION,
        default=None,
        metavar="auto|HOST:PORT",
        help="The Ray cluster to join (auto: the one 'ray start' runs here) [default: start a Ray runtime of "
        "this command's own].",
    ),
    click.option(
        "--workers",
        cls=_SectionOption,
        section=ENGINE_SECTION,
        type=int,
        default=None,
        help="Ray worker actors [default: one per CPU].",
    ),
    click.option(
        "--gpus-per-worker",
        cls=_SectionOption,
        section=ENGINE_SECTION,
        type=float,
        default=0.0,
        show_default=True,
        help="GPUs each Ray worker asks for; its network then runs in torch on CUDA.",
    ),
)


def _with_engine(fn):
    """Open the engine the --engine options name around the command (a Ray runtime it started is stopped after),
    and hand it to the command as `engine`."""

    @functools.wraps(fn)
    def wrapper(*args, engine: str, ray_address: str | None, workers: int | None, gpus_per_worker: float, **kwargs):
        from hashidx.engines.choose import open_engine

        with open_engine(engine, ray_address, workers, gpus_per_worker) as opened:
            return fn(*args, engine=opened, **kwargs)

    return ENGINE_OPTIONS(wrapper)


RUNTIME_OPTION = click.option(
    "--runtime",
    type=click.Choice(["onnx", "torch"]),
    default="onnx",
    show_default=True,
    help="Inference engine for the backbone passes: onnx (ONNX Runtime; the graph is exported from the torch "
    "model once and cached under ~/.cache/hashidx, about 4x faster on CPUs) or torch (eager, the reference).",
)
RERANK_OPTION = click.option(
    "--rerank",
    default=None,
    help="Re-rank by the asymmetric score uᵀv of the query's network outputs: none, ties (inside equal "
    "Hamming distances), K′ (the K′ nearest by Hamming), or features (K′ 400, then items of equal score, which "
    "share a code, by the cosine of their content vectors) [default: 400].",
)


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Feature cache to write (.h5).")
@click.option(
    "--backbone",
    default="efficientnet-lite0",
    show_default=True,
    help="Pretrained CNN (frozen): efficientnet-lite0 (offline weights), or with torchvision installed "
    "alexnet, vgg11, vgg16, vgg19, resnet18, resnet50, resnet101, densenet121.",
)
@click.option("--image-size", type=int, default=None, help="Input size in pixels [default: the backbone's, 224].")
@VIEWS_OPTION
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per backbone call.")
@ON_ERROR_OPTION
@click.option(
    "--checkpoint-every",
    type=int,
    default=32,
    show_default=True,
    help="Save progress to OUTPUT.partial every N batches; an interrupted run resumes from there.",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="The backbone's weights: imagenet, none, or a local state-dict file.",
)
@LABELS_OPTION
@click.option(
    "--label-property",
    default=None,
    metavar="NAME",
    help="DATA is a STAC catalog: the item property that holds each item's class [default: no labels].",
)
@READING_OPTIONS
@RUNTIME_OPTION
@NO_WAIT_OPTION
@_one_line_errors
@_with_engine
def features(
    data: Path,
    output: Path,
    backbone: str,
    image_size: int | None,
    views: int,
    batch_size: int,
    on_error: str,
    checkpoint_every: int,
    weights: str,
    labels: Path | None,
    label_property: str | None,
    bands: str | None,
    scale: str | None,
    tile: str | None,
    min_valid: float,
    runtime: str,
    engine,
) -> None:
    """Extract backbone features of DATA (class folders or a path<TAB>label list) into an HDF5 cache.

    DATA without labels is read too: a folder of images or scenes, one raster, a list of image paths
    (one a line), or a STAC catalog, collection, item collection or item (.json: one raster asset per item,
    --bands by common name or asset key, each item's id, collection and time kept); 'train --method itq' codes
    such an archive, and 'hashidx learn' learns from marks on it.

    Progress is kept in OUTPUT.partial while it runs: rerunning an interrupted command resumes it.
    With --labels the cache carries multi-label annotations, and runs trained on it are multi-label.
    GeoTIFFs and other rasters are read through GDAL with --bands and one dataset-wide --scale; with
    --tile each scene is cut into chips that keep its label. Georeferenced items keep their footprints.
    """
    import h5py

    from hashidx.codes.codefile import count_rows
    from hashidx.data.footprints import Footprints
    from hashidx.data.labels import read_label_table, relabel
    from hashidx.data.rasters import RGB
    from hashidx.features.cache import FeatureCache
    from hashidx.features.extract import write_features
    from hashidx.methods.inputs import dataset_inputs

    ds, radiometry = dataset_inputs(
        data, bands, scale, _tiling(tile, min_valid), labels_required=False, label_property=label_property
    )
    if labels is not None:
        ds = relabel(ds, read_label_table(labels), labels)
    write_features(
        ds,
        output,
        backbone,
        image_size,
        views,
        batch_size,
        on_error,
        checkpoint_every,
        weights,
        runtime,
        radiometry,
        engine,
    )
    # What was written, read back without its rows: the cache may be far larger than memory.
    head = FeatureCache.load(output, slice(0, 0))
    n = count_rows(output, "hashidx-features", "feature cache")
    _report_skipped(head.skipped, f"listed in {output}'s 'skipped' attribute")
    with h5py.File(output, "r") as f:
        footprints = Footprints.load(f)
    geo = "" if footprints is None else f", {sum(map(bool, footprints.crs))} with footprints"
    look = "" if radiometry == RGB else f", {radiometry.describe()}"
    click.echo(
        f"{output}: {n} images, {len(ds.classes) if ds.labelled else 'no'} classes, "
        f"{head.features.shape[1]}-d {backbone} features ({head.runtime}){look}{geo}"
    )


@main.command()
@click.argument("source", metavar="DATA_OR_FEATURES", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--method",
    type=click.Choice(["ahcl", "symmetric", "itq", "lsh"]),
    default="ahcl",
    show_default=True,
    help="ahcl: database codes learned by the solver; symmetric: sgn(F(x)) of every database image; "
    "itq / lsh: unsupervised, on the same features.",
)
@click.option("--bits", type=int, default=32, show_default=True, help="Code length, a multiple of 8.")
@click.option("--split", "split_path", type=click.Path(exists=True, path_type=Path), help="Reuse a split.json.")
@click.option("--query-fraction", type=float, default=0.2, show_default=True, help="Per class, for a new split.")
@click.option(
    "--train-pool",
    type=float,
    default=None,
    help="Database images whose pixels train the network: a count, or a fraction ≤ 1 [default: all].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (sampling, init, dropout).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of a new split.")
@click.option("--iterations", type=int, default=30, show_default=True, help="Outer iterations T.")
@click.option(
    "--code-init",
    type=click.Choice(["random", "label"]),
    default="random",
    show_default=True,
    help="How AHCL's database codes start: random, one code per item (the authors'), or label, one random code "
    "per label set, so items that share their labels stay on one code (fewer codes at short lengths with many "
    "classes).",
)
@click.option(
    "--content-dims",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="Length of each database item's content vector (principal components of its frozen features, 2 bytes "
    "each), which orders the items of one code under 'query --rerank features'; 0 stores none.",
)
@click.option(
    "--backbone",
    default="efficientnet-lite0",
    show_default=True,
    help="When DATA is images: efficientnet-lite0 (offline weights), or with torchvision installed alexnet, "
    "vgg11, vgg16, vgg19, resnet18, resnet50, resnet101, densenet121.",
)
@click.option("--image-size", type=int, default=None, help="When DATA is images [default: the backbone's].")
@VIEWS_OPTION
@click.option(
    "--labels-only",
    type=click.Path(exists=True, path_type=Path),
    help="More database items given by label alone (labels .h5 or path<TAB>label list; images never "
    "read): AHCL codes them after the split's database images.",
)
@ON_ERROR_OPTION
@click.option("--resume", is_flag=True, help="Continue an interrupted run of this same command from RUN_DIR/resume.pt.")
@click.option(
    "--checkpoint-every",
    type=int,
    default=1,
    show_default=True,
    help="Save RUN_DIR/resume.pt every N outer iterations (a fine-tuned VGG's state is ~1 GB).",
)
@click.option(
    "--finetune",
    is_flag=True,
    help="Train the backbone too, end to end on the pool's images (resize 256, crop 224); DATA must be images.",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="When DATA is images: the backbone's weights (with --finetune, its starting weights): "
    "imagenet, none, or a local state-dict file.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="With --finetune: auto (CUDA when available, with bf16 mixed precision), cpu, cuda, cuda:N.",
)
@click.option("--augment", is_flag=True, help="With --finetune: random 90° rotations and flips of the training images.")
@LABELS_OPTION
@READING_OPTIONS
@RUNTIME_OPTION
@NO_WAIT_OPTION
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Run folder to write.")
@_one_line_errors
@_with_engine
def train(
    source: Path,
    method: str,
    bits: int,
    split_path: Path | None,
    query_fraction: float,
    train_pool: float | None,
    seed: int,
    split_seed: int,
    iterations: int,
    code_init: str,
    content_dims: int,
    backbone: str,
    image_size: int | None,
    views: int,
    labels_only: Path | None,
    on_error: str,
    resume: bool,
    checkpoint_every: int,
    finetune: bool,
    weights: str,
    device: str,
    augment: bool,
    labels: Path | None,
    bands: str | None,
    scale: str | None,
    tile: str | None,
    min_valid: float,
    runtime: str,
    output: Path,
    engine,
) -> None:
    """Train a hash model and learn database codes: writes model.pt, codes.h5, split.json, train.json.

    DATA_OR_FEATURES is a dataset (features are extracted into RUN_DIR/features.h5 first) or a
    feature cache from 'hashidx features' (then --backbone, --image-size and --views come from it).
    """
    from hashidx.methods.runs import train_run
    from hashidx.methods.training import TrainConfig

    rec = train_run(
        source,
        output,
        method,
        bits,
        split_path=split_path,
        query_fraction=query_fraction,
        seed=seed,
        split_seed=split_seed,
        train_pool=train_pool,
        backbone=backbone,
        image_size=image_size,
        views=views,
        config=TrainConfig(iterations=iterations, code_init=code_init, content_dims=content_dims),
        labels_only=labels_only,
        on_error=on_error,
        resume=resume,
        finetune=finetune,
        weights=weights,
        device=device,
        augment=augment,
        checkpoint_every=checkpoint_every,
        labels=labels,
        runtime=runtime,
        bands=bands,
        scale=scale,
        tiling=_tiling(tile, min_valid),
        engine=engine,
    )
    _report_skipped([(s["path"], s["error"]) for s in rec["skipped_images"]], "listed in train.json")
    t = rec["times_s"]
    click.echo(
        f"{output}: {method} {bits} bits, {rec['n_codes']} database codes, trained on a pool of "
        f"{rec['pool_size']} images (features {t['features']:.1f}s, training {t['train']:.1f}s)"
    )
    settle = rec.get("settling") or {}
    if settle.get("settled") is False:
        warn(
            f"{output}: the codes did not settle: {settle['code_groups']} (label set, code) groups for "
            f"{settle['label_sets']} label sets after {len(rec['log'])} iterations (per iteration: 'code_groups' in "
            "train.json); try more --bits or --iterations"
        )


@main.command("build-index")
@click.argument("codes", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--type",
    "index_type",
    type=click.Choice(["auto", "flat", "ivf", "hnsw"]),
    default="auto",
    show_default=True,
    help="auto: the type and parameters measured best for this many codes (flat, exact, to 10⁶ codes; IVF with "
    "1,024 lists, 16 probed, past that), recorded with their measured recall in the sidecar; flat: exact, every "
    "code compared; ivf: codes in --nlist lists, --nprobe of them searched (faster, approximate); hnsw: a "
    "neighbour graph (fast, poor on learned codes, larger file).",
)
@click.option("--nlist", type=int, default=None, help="IVF lists [default: ~√n, ≥39 codes per list].")
@click.option("--nprobe", type=int, default=None, help="IVF lists probed at search [default: nlist/8].")
@click.option("--hnsw-m", type=int, default=32, show_default=True, help="HNSW neighbours per node.")
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="Index file (+ OUTPUT.json sidecar)."
)
@NO_WAIT_OPTION
@_one_line_errors
def build_index(codes: Path, index_type: str, nlist: int | None, nprobe: int | None, hnsw_m: int, output: Path) -> None:
    """Load database codes (codes.h5) into a FAISS binary index with ids."""
    from hashidx.index import indexes as idx

    if index_type == "auto" and (nlist or nprobe):
        raise HashidxError("--type auto chooses --nlist and --nprobe itself; give --type ivf to set them")
    sidecar = idx.build_file(codes, output, index_type, nlist, nprobe, hnsw_m)
    extra = ", ".join(f"{k}={sidecar[k]}" for k in ("nlist", "nprobe", "M") if k in sidecar)
    chosen = sidecar.get("auto")
    notes = [extra] if extra else []
    if chosen:
        notes.append(
            f"auto: recall@20 {chosen['recall']:.3f} measured at {chosen['measured_at']:,} codes"
            + (", extrapolated past it" if chosen["extrapolated"] else "")
        )
    click.echo(
        f"{output}: {sidecar['index_type']} index, {sidecar['count']} codes of {sidecar['bits']} bits"
        + (f" ({'; '.join(notes)})" if notes else "")
    )


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("source", metavar="IMAGES_OR_LIST", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="model.pt of the run.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per backbone call.")
@click.option("--allow-model-mismatch", is_flag=True, help="Add even if the model is not the one the codes came from.")
@ON_ERROR_OPTION
@MODEL_READING_OPTIONS
@RUNTIME_OPTION
@NO_WAIT_OPTION
@_one_line_errors
@_with_engine
def add(
    index_path: Path,
    source: Path,
    model_path: Path,
    batch_size: int,
    allow_model_mismatch: bool,
    on_error: str,
    tile: str | None,
    min_valid: float,
    bands: str | None,
    scale: str | None,
    runtime: str,
    engine,
) -> None:
    """Add new images to INDEX, encoded by the network (sgn F(x)): an image or scene, a folder of images, a
    list of paths, or a STAC catalog, collection, item collection or item (.json).

    Their ids follow the index's; their codes, paths, footprints and times go to INDEX.added.h5. Every image
    is read with the model's bands and scaling, or with --scale for pixels the model was not made for (each
    add's choice is recorded; 'hashidx info' shows it); with --tile scenes are cut into chips first.
    """
    from hashidx.index.add import add_images

    sidecar, skipped = add_images(
        index_path,
        model_path,
        source,
        batch_size,
        on_error,
        allow_model_mismatch,
        runtime,
        _tiling(tile, min_valid),
        bands,
        engine,
        scale,
    )
    _report_skipped(skipped, "not added")
    click.echo(f"{index_path}: {sidecar['count']} codes ({sidecar['added']} added by the network)")


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("query_file", metavar="QUERIES", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="model.pt of the run; needed unless QUERIES is a codes file.",
)
@click.option("-k", type=int, default=20, show_default=True, help="Results per query.")
@click.option("--nprobe", type=int, default=None, help="Override the index's IVF nprobe.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Results file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tsv", "jsonl", "geojson", "parquet", "geoparquet"]),
    default="tsv",
    show_default=True,
    help="geojson: one EPSG:4326 polygon per result with a footprint (opens in QGIS); parquet: the TSV's "
    "columns for pandas, DuckDB or Spark (needs pyarrow); geoparquet: every result with its footprint as a WKB "
    "polygon, label, source, window and STAC ids (geopandas, GDAL, QGIS; needs hashidx[geoparquet]).",
)
@click.option(
    "--since",
    default=None,
    metavar="DATE",
    help="Only items acquired on or after DATE (ISO 8601: 2014-01-01 or 2014-06-01T10:00:00Z); items of "
    "unknown time are left out. The order of the rest is unchanged.",
)
@click.option(
    "--until", default=None, metavar="DATE", help="Only items acquired on or before DATE (a date: all of it)."
)
@click.option(
    "--shards",
    type=int,
    default=None,
    help="Split a flat index's codes over N workers (each holds 1/N; per-query lists merged by distance, then "
    "id: the same results) [default: every worker holds the whole index].",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    help="Also write a gallery: one self-contained HTML page of each query beside its results.",
)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per backbone call.")
@click.option(
    "--allow-model-mismatch", is_flag=True, help="Search even if the model is not the one the codes came from."
)
@click.option(
    "--rule",
    type=click.Choice(["mean", "fusion"]),
    default="fusion",
    show_default=True,
    help="How an examples file's several examples combine: fusion (reciprocal-rank fusion of each example's own "
    "list, the negatives' subtracted) or mean (u-space: mean of the positives minus mean of the negatives).",
)
@RERANK_OPTION
@ON_ERROR_OPTION
@MODEL_READING_OPTIONS
@RUNTIME_OPTION
@_one_line_errors
@_with_engine
def query(
    index_path: Path,
    query_file: Path,
    model_path: Path | None,
    k: int,
    nprobe: int | None,
    output: Path,
    fmt: str,
    since: str | None,
    until: str | None,
    shards: int | None,
    html_path: Path | None,
    batch_size: int,
    allow_model_mismatch: bool,
    rule: str,
    rerank: str | None,
    on_error: str,
    tile: str | None,
    min_valid: float,
    bands: str | None,
    scale: str | None,
    runtime: str,
    engine,
) -> None:
    """Answer QUERIES against INDEX: write (query, rank, id, path, distance, score, lon, lat, datetime) rows.

    \b
    QUERIES is one of
      - an image or scene, a folder of images, image paths one a line or in a CSV/TSV with a 'path'
        column, or a STAC catalog/collection/item (encoded with --model; with --tile, scenes are cut into
        chips and each chip queries);
      - a feature cache from 'hashidx features' (its rows, through the --model head);
      - a codes file (codes.h5 layout): searched as is, no model needed;
      - an examples file: a TSV/CSV with the header 'query, example, mark', one row per example (an indexed
        id or an image path, marked + or -); rows sharing a query name are one "more like these, not like
        those" query (--rule); items given as negatives never come back.

    Results are ordered by Hamming distance, then (queries through the network) re-ranked by uᵀv, in
    the score column; ties come out by id ascending. The --html gallery frames a result green or red
    when both classes are known: queries from a feature cache or codes file, or images inside a folder
    named after one of the model's classes. Codes and feature queries are read, searched and written
    4,096 at a time, so a file of millions of queries runs in bounded memory (--html keeps them all).
    lon/lat are the centre of a result's footprint (empty where its source is not georeferenced);
    datetime is its acquisition time (from its STAC item or the file's metadata; empty where unknown).
    """
    from hashidx.results.period import Period
    from hashidx.results.query import Results, Searcher, query_to_file

    period = Period.parse(since, until)
    searcher = Searcher(
        index_path,
        model_path,
        nprobe,
        allow_model_mismatch,
        runtime,
        _tiling(tile, min_valid),
        bands,
        engine,
        shards,
        scale,
    )
    from hashidx.data.queryfile import read_examples_file

    examples = read_examples_file(query_file)
    if examples is not None:
        from hashidx.results.examples import query_examples_file
        from hashidx.results.query import QueryTotals, write_results

        answered = query_examples_file(searcher, examples, query_file.parent, k, rule, rerank, batch_size, period)
        write_results(answered, output, fmt)
        totals = QueryTotals(sum(map(len, answered)), len(answered), [], answered)
    else:
        totals = query_to_file(
            searcher, query_file, output, fmt, k, batch_size, on_error, rerank, html_path is not None, period
        )
    _report_skipped(totals.skipped, "no result rows for them")
    click.echo(f"{output}: {totals.results} results for {totals.queries} queries")
    if html_path is not None:
        from hashidx.results.gallery import write_gallery

        title = f"{query_file.name} against {index_path.name}"
        if searcher.encoder is not None:  # thumbnails read as the model reads its images
            write_gallery(Results.concat(totals.kept), html_path, title, searcher.encoder.radiometry)
        else:
            write_gallery(Results.concat(totals.kept), html_path, title)
        click.echo(f"{html_path}: gallery of {totals.queries} queries (open it in a browser)")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--split", "split_path", type=click.Path(exists=True, path_type=Path), help="[default: RUN_DIR/split.json]"
)
@click.option(
    "-k", "ks", type=int, multiple=True, default=(10, 50, 100), show_default=True, help="Cut-offs for mAP@k, P@k."
)
@RERANK_OPTION
@LABELS_OPTION
@RUNTIME_OPTION
@_one_line_errors
@_with_engine
def evaluate(
    run_dir: Path,
    split_path: Path | None,
    ks: tuple[int, ...],
    rerank: str | None,
    labels: Path | None,
    runtime: str,
    engine,
) -> None:
    """Rank the run's database codes for its query images; print the metrics as JSON (also RUN_DIR/eval.json).

    Tie-aware mAP, mAP@k, P@k (expected values over random orders of tied items), mAP_db_order
    (ties in database order) and P@H<=2; with multi-label data also NDCG@k, ACG@k and WAP@k.
    """
    from hashidx.evaluation.evaluate import evaluate_run
    from hashidx.results.rerank import DEFAULT_RERANK, parse_rerank

    mode = parse_rerank(DEFAULT_RERANK if rerank is None else rerank)
    metrics = evaluate_run(run_dir, split_path, tuple(ks), rerank=mode, labels=labels, runtime=runtime, engine=engine)
    click.echo(json.dumps(metrics, indent=2))


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 16,32,64") from None


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--bits", default="16,32,64", show_default=True, callback=_int_list, help="Code lengths.")
@click.option(
    "--methods",
    default="ahcl,symmetric,itq,lsh",
    show_default=True,
    callback=lambda c, p, v: [m.strip() for m in v.split(",") if m.strip()],
)
@VIEWS_OPTION
@click.option(
    "--train-pool",
    type=float,
    default=0.2,
    show_default=True,
    help="Database images whose pixels train the networks (count or fraction); also the scaling run's pool.",
)
@click.option("--scaling-sizes", type=int, default=5, show_default=True, help="Database sizes in the scaling run.")
@click.option(
    "--scaling-views",
    type=click.Choice(["1", "4", "8"]),
    default="1",
    show_default=True,
    callback=lambda c, p, v: int(v),
    help="Orientations per image in the scaling run (bounds its time).",
)
@click.option("--iterations", type=int, default=30, show_default=True, help="Outer iterations T.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (the split is always seed 0).")
@LABELS_OPTION
@RUNTIME_OPTION
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Report folder.")
@_one_line_errors
def bench(
    data: Path,
    bits: list[int],
    methods: list[str],
    views: int,
    train_pool: float,
    scaling_sizes: int,
    scaling_views: int,
    iterations: int,
    seed: int,
    labels: Path | None,
    runtime: str,
    output: Path,
) -> None:
    """Compare methods x code lengths on one split; write report.md, report.json and PNG plots."""
    from hashidx.evaluation.bench import run_bench

    report = run_bench(
        data,
        output,
        bits,
        methods,
        views,
        train_pool,
        scaling_sizes,
        scaling_views,
        seed,
        iterations=iterations,
        labels=labels,
        runtime=runtime,
    )
    click.echo(f"{output / 'report.md'}: {len(report['results'])} runs in {report['total_s']:.0f}s")


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--marks",
    "marks_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Marks file: 'item_id<TAB>concept<TAB>+|-' lines (or a JSON list); a later line for an item and concept "
    "replaces an earlier one.",
)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="New folder for the model.")
@click.option(
    "--features",
    "features_path",
    type=click.Path(path_type=Path),
    help="Feature cache of the archive's items [default: the one the index's run was trained from].",
)
@click.option("--bits", type=int, default=None, help="Code length [default: the index's].")
@click.option("--iterations", type=int, default=10, show_default=True, help="AHCL outer iterations.")
@click.option(
    "--background",
    type=int,
    default=50,
    show_default=True,
    help="Unmarked items drawn at random as unlike every concept (what a concept with positives only learns from).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@_one_line_errors
def learn(
    index_path: Path,
    marks_path: Path,
    output: Path,
    features_path: Path | None,
    bits: int | None,
    iterations: int,
    background: int,
    seed: int,
) -> None:
    """Learn a model and index from marks on INDEX's items: AHCL with the concepts as classes.

    The marked items' codes are learned by the solver; every other item is re-encoded through the new head from
    its cached backbone features (no image is read). OUTPUT gets model.pt, codes.h5, index.faiss (+ .json), the
    marks and learn.json, and appears whole or not at all; INDEX and its model are left as they were (undo: keep
    using them).
    """
    from hashidx.feedback.learn import LearnSettings, learn_run

    if iterations < 1 or background < 0:
        raise HashidxError("--iterations must be at least 1 and --background at least 0")
    record = learn_run(
        index_path, marks_path, output, features_path, bits, LearnSettings(iterations, background=background, seed=seed)
    )
    click.echo(
        f"{output}: {record['items']} items re-encoded, {record['marks']} marks on {len(record['concepts'])} "
        f"concept(s) ({', '.join(record['concepts'])}) in {sum(record['times_s'].values()):.1f}s; search with "
        f"'hashidx query {output}/index.faiss --model {output}/model.pt'"
    )
    if record["left_out_without_features"]:
        warn(f"{record['left_out_without_features']} indexed item(s) have no cached features and are not in {output}")


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="model.pt of the run; needed to search "
              "by image (search by item and by place needs none).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; off loopback a token "
              "is required.")  # fmt: skip
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--token", default=None, help="Every request must carry it ('Authorization: Bearer TOKEN'; the page "
              "takes it once as /?token=TOKEN) [default: $HASHIDX_TOKEN, else none on loopback].")  # fmt: skip
@click.option("--max-upload-mb", type=float, default=32, show_default=True, help="Largest image upload.")
@click.option("--max-megapixels", type=float, default=64, show_default=True, help="Largest upload in pixels, read "
              "from its header before decoding (decompression bombs are refused unread).")  # fmt: skip
@click.option("--max-concurrency", type=int, default=4, show_default=True, help="Requests at work at once.")
@click.option("--max-queue", type=int, default=64, show_default=True, help="Requests waiting for a slot (each at "
              "most 10 s); one more is answered 503 with Retry-After instead of queueing.")  # fmt: skip
@click.option("--cors-origin", default=None, help="The one web origin allowed to call the API from a browser "
              "[default: none].")  # fmt: skip
@click.option("--learn-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Make the service writable: keep marks (DIR/marks.tsv) and learn models from them "
              "(DIR/learned/NNNN/), with undo [default: read-only].")  # fmt: skip
@click.option("--features", "features_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The archive's feature cache that --learn-dir learns from [default: the one INDEX's run "
              "recorded].")  # fmt: skip
@click.option("--scale", default=None, metavar="auto|LO:HI[,LO:HI...]",
              help="How uploads the model's scaling cannot read (16-bit, float) are read: LO:HI for all bands or "
              "one per band, or auto (2nd-98th percentile per band of the upload) [default: refused].")  # fmt: skip
@RUNTIME_OPTION
@_one_line_errors
def serve(
    index_path: Path,
    model_path: Path | None,
    host: str,
    port: int,
    token: str | None,
    max_upload_mb: float,
    max_megapixels: float,
    max_concurrency: int,
    max_queue: int,
    cors_origin: str | None,
    learn_dir: Path | None,
    features_path: Path | None,
    scale: str | None,
    runtime: str,
) -> None:
    """Search INDEX over HTTP: a map page at / and a JSON API (/docs), loaded once and answered warm.

    Read-only unless --learn-dir names a folder for marks and learned models. Items and scenes are addressed by
    id; no request names a file.
    """
    from hashidx.service.server import serve as run
    from hashidx.service.settings import ServeSettings

    settings = ServeSettings(
        index_path,
        model_path,
        host,
        port,
        token,
        runtime,
        int(max_upload_mb * 2**20),
        int(max_megapixels * 2**20),
        max_concurrency,
        max_queue,
        cors_origin=cors_origin,
        learn_dir=learn_dir,
        features=features_path,
        scale=scale,
    )
    run(settings, say=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="GeoParquet file to write (.parquet)."
)
@_one_line_errors
def export(index_path: Path, output: Path) -> None:
    """Write every item of INDEX as a GeoParquet row: footprint polygon (EPSG:4326), id, path, source file and
    pixel window, acquisition time, label, STAC item and collection, and code (hex).

    The file opens in geopandas (geopandas.read_parquet), GDAL and QGIS; items without a footprint have a null
    geometry. It is written one row group at a time, so an index of any size fits in memory.
    """
    from hashidx.results.export import export_items

    n = export_items(index_path, output)
    click.echo(f"{output}: {n} items")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--check", is_flag=True, help="Exit 2 when a companion file differs or is missing.")
@_one_line_errors
def info(file: Path, as_json: bool, check: bool) -> None:
    """What FILE is (features, codes, labels, model, training state, index, split/train/eval JSON) and
    whether its companions (the model its codes came from, the codes an index was built from...) match."""
    from hashidx.info import describe

    d = describe(file)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
    else:
        click.echo(f"{d['file']}: {d['what']}")
        for key, value in d["facts"].items():
            if isinstance(value, list) and all(isinstance(v, str) for v in value) and max(map(len, value)) > 60:
                # sentences (each add's source and scaling): one line each
                click.echo(f"  {key}:" + "".join(f"\n    - {v}" for v in value))
            elif value is not None:
                click.echo(
                    f"  {key}: {value:,}"
                    if isinstance(value, int) and not isinstance(value, bool)
                    else f"  {key}: {value}"
                )
        for c in d["companions"]:
            click.echo(f"  [{c['status']}] {c['file']}" + (f": {c['detail']}" if c["detail"] else ""))
    if check and any(c["status"] in ("differs", "missing") for c in d["companions"]):
        sys.exit(2)


@main.group(cls=_PipelineOrder)
def datasets() -> None:
    """Public remote-sensing scene datasets: list them, download one as class folders."""


@datasets.command("list")
@_one_line_errors
def datasets_list() -> None:
    """Each dataset's name, size, where it comes from, and whether hashidx can fetch it directly."""
    from hashidx.data.download import CATALOGUE

    for s in CATALOGUE.values():
        how = "direct, MD5 checked" if s.url else f"by hand ({s.note}), then --archive"
        click.echo(
            f"{s.name:<14} {s.title}: {s.classes} classes, {s.images:,} images, {s.pixels}; "
            f"{s.size}; {how}\n{'':<14} {s.url or s.page}"
        )


@datasets.command("download")
@click.argument("name")
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to put ROOT/NAME (class folders) in.",
)
@click.option("--url", help="A mirror to download from instead; the archive's MD5 is still checked.")
@click.option(
    "--archive",
    type=click.Path(path_type=Path),
    help="An archive you downloaded yourself (datasets with no direct download): check and unpack it.",
)
@click.option("--keep-archive", is_flag=True, help="Keep the downloaded archive after unpacking.")
@_one_line_errors
def datasets_download(name: str, root: Path, url: str | None, archive: Path | None, keep_archive: bool) -> None:
    """Download dataset NAME (see 'hashidx datasets list') and unpack it to ROOT/NAME as class folders.

    An interrupted download continues where it stopped when the command is run again.
    """
    from hashidx.data.datasets import load_dataset
    from hashidx.data.download import download

    folder = download(name, root, url, archive, keep_archive)
    ds = load_dataset(folder)
    click.echo(
        f"{folder}: {len(ds)} images in {len(ds.classes)} classes; next: hashidx features {folder} -o FEATURES.h5"
    )


@main.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), help="Run on a real dataset instead.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("hashidx-demo"), show_default=True)
@click.option("--bits", type=int, default=32, show_default=True)
@VIEWS_OPTION
@_one_line_errors
def demo(data: Path | None, output: Path, bits: int, views: int) -> None:
    """The whole pipeline on a generated image set (no network, no arguments), or on --data DIR.

    Writes OUTPUT/gallery.html: 20 of the split's queries beside their top 10.
    """
    from hashidx.demo import run_demo

    summary = run_demo(output, data, bits, echo=click.echo, views=views)
    click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
