"""Data-loader configs. Paths derive from $DATA_ROOT_DIR (default $FASTGEN_OUTPUT_ROOT/DATA).

The module-level constants are built when this module is imported; `cifar10_loader_config()` and friends build a
fresh one reading the environment now (BaseConfig uses them so a default never goes stale or is shared).
"""

from fastgen.utils import LazyCall as L
from fastgen.utils.env import data_root_dir

DATA_ROOT_DIR = data_root_dir()
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist

_IMAGE_LOADER = "fastgen.datasets.image_loader.ImageLoader"


def image_loader_config(relative_path: str, batch_size: int, use_labels: bool = True):
    """An ImageLoader over `$DATA_ROOT_DIR/<relative_path>` (zip or folder, EDM dataset_tool layout)."""
    return L(_IMAGE_LOADER)(
        dataset_path=f"{data_root_dir()}/{relative_path}", batch_size=batch_size, use_labels=use_labels, shuffle=True,
        seed=0, sampler_start_idx=None, xflip=False, num_workers=0,
    )


def cifar10_loader_config():
    return image_loader_config("cifar10/cifar10-32x32.zip", batch_size=128)


CIFAR10_Loader_Config = cifar10_loader_config()
ImageNet64_Loader_Config = image_loader_config("imagenet-64/imagenet-64x64.zip", batch_size=32)
ImageNet64_EDMV2_Loader_Config = image_loader_config("imagenet-64/imagenet-64x64-edmv2.zip", batch_size=32)
ImageNet256_Loader_Config = image_loader_config("imagenet-256/imagenet_256_sd.zip", batch_size=32)

FashionMNIST_Loader_Config = L("fastgen.datasets.idx_loader.FashionMNISTLoader")(
    root=FASHION_MNIST_SYSTEM_DIR, split="train", batch_size=64, resolution=32, use_labels=True, seed=0,
    sampler_start_idx=None,
)
GaussianMixture_Loader_Config = L("fastgen.datasets.gaussian_mixture.GaussianMixtureLoader")(
    gmm_name="ring8", dim=2, batch_size=256, use_labels=False, seed=0, sampler_start_idx=None, num_samples=None,
)
# (noise, teacher sample) pairs or teacher trajectories for knowledge distillation
TeacherPair_Loader_Config = L("fastgen.datasets.kd_dataset.TeacherPairLoader")(
    path=f"{DATA_ROOT_DIR}/kd/teacher_pairs", batch_size=64, seed=0, sampler_start_idx=None,
)

# --- WebDataset loaders (tar shards on disk or S3; fastgen/datasets/wds/README in fastgen/datasets/README.md) --------
# `datatags` name shard sources as "WDS:<folder or s3://bucket/prefix>"; `key_map` maps batch keys to the file
# extensions inside each sample; `files_map` loads one file shared by every sample (e.g. a negative-prompt
# embedding); `presets` fill a key with a named constant (fastgen.datasets.wds.presets.PRESET_CONSTANTS).
_WDS = "fastgen.datasets.wds.loaders"


def _wds_tag(name: str) -> list[str]:
    return [f"WDS:{data_root_dir()}/wds/{name}"]


ImageLoaderConfig = L(f"{_WDS}.ImageWDSLoader")(
    datatags=_wds_tag("images"), batch_size=32, key_map={"real": "jpg", "condition": "txt"}, files_map=None,
    presets={"neg_condition": "empty_string"}, img_size=512, seed=0, shuffle_size=1000, num_workers=4,
    sampler_start_idx=None, max_fail_fraction=0.01,
)
ImageLatentLoaderConfig = L(f"{_WDS}.WDSLoader")(
    datatags=_wds_tag("image_latents"), batch_size=32, key_map={"real": "latent.pth", "condition": "txt_emb.pth"},
    files_map={"neg_condition": f"{DATA_ROOT_DIR}/wds/neg_prompt_emb.npy"}, presets=None, seed=0, shuffle_size=1000,
    num_workers=4, sampler_start_idx=None, max_fail_fraction=0.01, sample_shapes=None,
)
VideoLoaderConfig = L(f"{_WDS}.VideoWDSLoader")(
    datatags=_wds_tag("videos"), batch_size=2, key_map={"real": "mp4", "condition": "txt"}, files_map=None,
    presets={"neg_condition": "neg_prompt_wan"}, sequence_length=81, img_size=(832, 480), decoder_type="segment",
    seed=0, shuffle_size=100, num_workers=2, sampler_start_idx=None, max_fail_fraction=0.01,
)
VideoLatentLoaderConfig = L(f"{_WDS}.WDSLoader")(
    datatags=_wds_tag("video_latents"), batch_size=2, key_map={"real": "latent.pth", "condition": "txt_emb.pth"},
    files_map={"neg_condition": f"{DATA_ROOT_DIR}/wds/neg_prompt_emb.npy"}, presets=None, seed=0, shuffle_size=100,
    num_workers=2, sampler_start_idx=None, max_fail_fraction=0.01, sample_shapes=None,
)
# knowledge distillation: (noise, teacher output, condition) pairs, and whole teacher ODE paths
PairLoaderConfig = L(f"{_WDS}.WDSLoader")(
    datatags=_wds_tag("kd_pairs"), batch_size=2,
    key_map={"real": "real.pth", "noise": "noise.pth", "condition": "txt_emb.pth"}, files_map=None, presets=None,
    seed=0, shuffle_size=100, num_workers=2, sampler_start_idx=None, max_fail_fraction=0.01, sample_shapes=None,
)
PathLoaderConfig = L(f"{_WDS}.WDSLoader")(
    datatags=_wds_tag("kd_paths"), batch_size=2,
    key_map={"real": "real.pth", "path": "path.pth", "condition": "txt_emb.pth"}, files_map=None, presets=None,
    seed=0, shuffle_size=100, num_workers=2, sampler_start_idx=None, max_fail_fraction=0.01, sample_shapes=None,
)
# stationary AR(1) "videos" [dim, num_frames, 1, 1]: the exact-oracle data of the causal methods (Toy/*causal*)
AR1Video_Loader_Config = L("fastgen.datasets.ar1_video.AR1VideoLoader")(
    dim=4, num_frames=8, a=0.9, batch_size=256, seed=0, sampler_start_idx=None, num_samples=None,
)
