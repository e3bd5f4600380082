"""Attention U-Net (Oktay et al., 2018) in Keras 3.

Encoder/decoder of 3x3 conv + BatchNorm + ReLU blocks, 2x2 max pooling,
learnable 2x2 up-convolutions, and an additive attention gate on every skip
connection, driven by the coarser decoder signal. Input ``(batch, H, W,
bands)`` float32 with H and W multiples of ``2**depth``; output ``(batch, H,
W, classes)`` softmax probabilities.

Example
-------
>>> model = build_attention_unet(6, 5, config="small")        # doctest: +SKIP
>>> model.output_shape                                          # doctest: +SKIP
(None, None, None, 5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["UNetConfig", "CONFIGS", "get_config", "build_attention_unet", "load_keras_model", "receptive_field_radius"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture and training defaults of a named configuration.

    Attributes
    ----------
    name : str
    depth : int
        Number of 2x2 poolings; input sizes must be multiples of ``2**depth``.
    base_filters : int
        Filters of the first level; doubled at every level down.
    patch_size : int
        Training patch edge in pixels (a multiple of ``2**depth``).
    batch_size : int
    learning_rate : float
        Adam's step size.
    """

    name: str
    depth: int
    base_filters: int
    patch_size: int
    batch_size: int
    learning_rate: float = 1e-3

    @property
    def size_multiple(self) -> int:
        return 2**self.depth

    def to_dict(self) -> dict:
        return asdict(self)


#: Named configurations: ``small`` trains in minutes on a 2-core CPU (demo, CI);
#: ``default`` is the full-size network of the paper's shape.
CONFIGS = {
    "small": UNetConfig("small", depth=3, base_filters=8, patch_size=64, batch_size=16, learning_rate=3e-3),
    "default": UNetConfig("default", depth=4, base_filters=32, patch_size=256, batch_size=8, learning_rate=1e-3),
}


def get_config(name: str | UNetConfig, **overrides) -> UNetConfig:
    """A named configuration, with optional field overrides (``depth=``, ...)."""
    if isinstance(name, UNetConfig):
        cfg = name
    else:
        try:
            cfg = CONFIGS[name]
        except KeyError:
            raise ValueError(f"unknown model configuration '{name}'; known: {', '.join(CONFIGS)}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(cfg, **overrides) if overrides else cfg
    if cfg.depth < 1 or cfg.base_filters < 1:
        raise ValueError(f"depth and base_filters must be positive, got {cfg.depth} and {cfg.base_filters}")
    if cfg.patch_size % cfg.size_multiple:
        raise ValueError(f"patch size {cfg.patch_size} is not a multiple of 2**depth = {cfg.size_multiple}")
    return cfg


def receptive_field_radius(depth: int) -> int:
    """Theoretical receptive-field radius in pixels of the network's output.

    Two 3x3 convolutions per level on the way down and up, 2x2 pooling and
    2x2 up-convolutions: the radius a tile needs as context (halo) so that
    tiled inference equals a pass over the whole image.
    """
    radius = 0.0
    for level in range(depth):
        stride = 2**level
        radius += 2 * stride  # encoder block: two 3x3 convs
        radius += 0.5 * stride  # 2x2 pooling
    radius += 2 * 2**depth  # bottleneck block
    for level in reversed(range(depth)):
        stride = 2**level
        radius += 0.5 * 2 * stride  # 2x2 up-convolution from the coarser level
        radius += 0.5 * 2 * stride  # attention gate's 2x2 strided theta on the skip
        radius += 2 * stride  # decoder block
    return int(radius + 0.999)


def _conv_block(x, filters: int, name: str):
    from keras import layers

    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def _attention_gate(skip, gating, inter: int, name: str):
    """Additive attention (Oktay et al. 2018, eq. 1-2): skip * sigmoid(psi(relu(Wx x + Wg g)))."""
    from keras import layers

    theta = layers.Conv2D(inter, 2, strides=2, padding="same", name=f"{name}_theta")(skip)
    phi = layers.Conv2D(inter, 1, padding="same", name=f"{name}_phi")(gating)
    f = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = layers.Conv2D(1, 1, padding="same", activation="sigmoid", name=f"{name}_psi")(f)
    # Nearest-neighbour x2 upsampling as a fixed 2x2 transposed convolution of ones: the same
    # numbers as UpSampling2D, but one ConvTranspose in ONNX instead of a Tile/Reshape chain.
    alpha = layers.Conv2DTranspose(1, 2, strides=2, padding="valid", use_bias=False, trainable=False,
                                   kernel_initializer="ones", name=f"{name}_alpha")(psi)
    return layers.Multiply(name=f"{name}_gated")([skip, alpha])


def _decoder_block(up, gated, filters: int, name: str):
    """Conv block over concat([up, gated]), with the first convolution split per input.

    ``conv(concat(a, b)) == conv_a(a) + conv_b(b)`` for a bias-free convolution; the sum
    form spares ONNX Runtime a channel concatenation of full-resolution tensors.
    """
    from keras import layers

    a = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv1_up")(up)
    b = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv1_skip")(gated)
    x = layers.Add(name=f"{name}_conv1")([a, b])
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(x)
    return layers.ReLU(name=f"{name}_relu2")(x)


_SOFTMAX = []


def _channel_softmax():
    """Softmax over the last axis written as exp / sum: ONNX Runtime runs it on NCHW
    without the transposes its Softmax operator needs for a non-last axis."""
    if _SOFTMAX:
        return _SOFTMAX[0]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="snap_pc")
    class ChannelSoftmax(keras.layers.Layer):
        def call(self, x):
            e = ops.exp(x - ops.max(x, axis=-1, keepdims=True))
            return e / ops.sum(e, axis=-1, keepdims=True)

    _SOFTMAX.append(ChannelSoftmax)
    return ChannelSoftmax


def load_keras_model(path):
    """Load a checkpoint written by ``snap-pc train`` (``MODEL.best.keras``)."""
    import keras

    _channel_softmax()  # registers the custom layer
    return keras.models.load_model(path, compile=False)


def build_attention_unet(n_bands: int, n_classes: int, config: str | UNetConfig = "default", **overrides):
    """Build an uncompiled Keras Attention U-Net.

    Parameters
    ----------
    n_bands : int
        Input channels (bands and indices, normalized).
    n_classes : int
        Output classes (softmax channels).
    config : str or UNetConfig
        ``"small"``, ``"default"`` or a config object; ``overrides`` replace
        its fields (``depth=3``, ``base_filters=16``).

    Returns
    -------
    keras.Model
        Input ``(None, None, None, n_bands)``, output ``(None, None, None,
        n_classes)`` float32 probabilities.
    """
    import keras
    from keras import layers

    cfg = get_config(config, **overrides)
    inputs = keras.Input(shape=(None, None, n_bands), name="bands")
    x = inputs
    skips = []
    for level in range(cfg.depth):
        x = _conv_block(x, cfg.base_filters * 2**level, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, cfg.base_filters * 2**cfg.depth, "bottleneck")
    for level in reversed(range(cfg.depth)):
        filters = cfg.base_filters * 2**level
        gated = _attention_gate(skips[level], x, max(filters // 2, 1), f"att{level}")
        # k=2, s=2: "valid" is exactly 2H x 2W, with no crop in the exported graph.
        up = layers.Conv2DTranspose(filters, 2, strides=2, padding="valid", name=f"up{level}")(x)
        x = _decoder_block(up, gated, filters, f"dec{level}")
    logits = layers.Conv2D(n_classes, 1, dtype="float32", name="logits")(x)
    outputs = _channel_softmax()(dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=f"attention_unet_{cfg.name}")
