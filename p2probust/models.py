"""Model zoo and stacked-parameter helpers.

The simulator keeps every node's parameters as one row of a ``params[n, d]`` tensor. A model is a
*template*: :class:`ParamSpec` maps a flat row to the template's named tensors (views), and
:func:`torch.func.functional_call` evaluates the template with them, ``vmap``-ed over nodes::

    spec = ParamSpec.from_module(model)
    params = init_stacked(lambda: MLP(64), n, generator=gen)           # [n, d]
    out = torch.func.vmap(lambda p: torch.func.functional_call(model, spec.unflatten(p), (x,)))(params)

No model here has buffers or batch norm. :class:`DropoutCNN` has dropout, but no hidden random
state: its masks are inputs (``forward(x, masks)``), drawn by the trainer from the run's ``batches``
stream (:meth:`DropoutCNN.draw_masks`); without masks it is the evaluation-mode network. So a node's
output depends only on its row (and its masks).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .config.parts import InitScheme

__all__ = [
    "INIT_SCHEMES",
    "LinearRegression",
    "LogisticRegression",
    "MLP",
    "DropoutCNN",
    "ParamSpec",
    "SmallCNN",
    "flatten_params",
    "init_stacked",
    "num_parameters",
]


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer on the flattened input.

    Parameters
    ----------
    in_features : int
        Number of input features after flattening (64 for digits, 784 for MNIST).
    num_classes : int
        Number of classes; the output is ``[B, num_classes]`` logits.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(start_dim=1))


class MLP(nn.Module):
    """Two-layer perceptron ``Linear → ReLU → Linear`` on the flattened input.

    Parameters
    ----------
    in_features : int
        Number of input features after flattening.
    hidden : int
        Width of the hidden layer.
    num_classes : int
        Number of output logits.
    """

    def __init__(self, in_features: int, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(start_dim=1))))


class SmallCNN(nn.Module):
    """A LeNet-style CNN for ``[B, 1, 28, 28]`` images (5,994 parameters for 10 classes).

    ``conv(1→8, 5×5) → ReLU → maxpool 2 → conv(8→16, 5×5) → ReLU → maxpool 2 → Linear(256 → C)``.
    No dropout and no batch norm, so it has no buffers or train/eval modes and works under
    :func:`torch.func.vmap` over per-node parameters. Inputs ``[B, 784]`` are reshaped.

    Parameters
    ----------
    num_classes : int
        Number of output logits.

    References
    ----------
    .. [1] Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to
       document recognition", Proc. IEEE 86(11), 1998.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(start_dim=1))


class DropoutCNN(nn.Module):
    """The MNIST network of He, Karimireddy and Jaggi's ClippedGossip code (1,199,882 parameters).

    ``conv(1→32, 3×3) → ReLU → conv(32→64, 3×3) → maxpool 2 → Dropout2d(0.25) → Linear(9216 → 128)
    → ReLU → Dropout(0.5) → Linear(128 → C)``: PyTorch's MNIST example network as their
    ``codes/tasks/mnist.py`` ``Net`` writes it — without a ReLU after the second convolution (kept
    here), and with logits out (their ``log_softmax`` + ``nll_loss`` is the cross-entropy used here).

    Dropout masks are inputs: ``forward(x, masks)`` with ``masks = (channel [B, 64, 1, 1], hidden
    [B, 128])`` already scaled by ``1/(1 − p)`` (as :meth:`draw_masks` returns them) trains;
    ``forward(x)`` is the evaluation mode. ``Dropout2d`` zeroes whole channels of each sample;
    their second ``Dropout2d`` acts on a ``[B, 128]`` tensor, where it zeroes single entries.

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
       ClippedGossip", arXiv:2202.01545, 2022; code epfml/byzantine-robust-decentralized-optimizer.
    .. [2] N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting", JMLR 2014.
    """

    P_CHANNEL, P_HIDDEN = 0.25, 0.5

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, 28, 28)
        x = torch.max_pool2d(self.conv2(torch.relu(self.conv1(x))), 2)
        if masks is not None:
            x = x * masks[0]
        x = torch.relu(self.fc1(x.flatten(start_dim=1)))
        if masks is not None:
            x = x * masks[1]
        return self.fc2(x)

    @classmethod
    def draw_masks(cls, a: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled dropout masks of ``a`` nodes' batches: ``([a, B, 64, 1, 1], [a, B, 128])``."""
        keep1 = torch.rand(a, batch, 64, 1, 1, generator=generator, device=generator.device) >= cls.P_CHANNEL
        keep2 = torch.rand(a, batch, 128, generator=generator, device=generator.device) >= cls.P_HIDDEN
        return keep1.float() / (1 - cls.P_CHANNEL), keep2.float() / (1 - cls.P_HIDDEN)


class LinearRegression(nn.Module):
    """Linear model without bias, ``x ↦ x·θ``; output ``[B]`` (squeezed).

    Parameters
    ----------
    in_features : int
        Dimension ``d`` of ``θ``. The flat parameter vector of this model *is* ``θ``, so it can be
        compared directly with :func:`~p2probust.data.least_squares_optimum`.
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(start_dim=1)).squeeze(-1)


def layers_only(model: nn.Module) -> bool:
    """Whether ``model`` is one of p2probust's models, whose forward pass does its matrix products
    in its ``nn.Linear`` and ``nn.Conv2d`` layers alone (a plugin model may do more)."""
    return type(model) in (LogisticRegression, MLP, SmallCNN, DropoutCNN, LinearRegression)


def num_parameters(module: nn.Module) -> int:
    """Total number of scalar parameters ``d`` of ``module``."""
    return sum(p.numel() for p in module.parameters())


def flatten_params(module: nn.Module) -> torch.Tensor:
    """The parameters of ``module`` concatenated into one detached vector ``[d]``.

    The order is that of ``module.named_parameters()``, the same as :class:`ParamSpec`.
    """
    params = [p.detach().reshape(-1) for p in module.parameters()]
    if not params:
        return torch.zeros(0)
    return torch.cat(params)


@dataclass(frozen=True)
class ParamSpec:
    """Layout of a module's parameters inside a flat vector of length ``d``.

    Attributes
    ----------
    names : tuple[str, ...]
        Parameter names, in ``named_parameters()`` order.
    shapes : tuple[tuple[int, ...], ...]
        Shape of each parameter.
    numels : tuple[int, ...]
        Number of elements of each parameter.
    offsets : tuple[int, ...]
        Start of each parameter in the flat vector.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    numels: tuple[int, ...]
    offsets: tuple[int, ...]

    @classmethod
    def from_module(cls, module: nn.Module) -> "ParamSpec":
        """The layout of ``module`` (works on a module on the ``meta`` device)."""
        names, shapes, numels, offsets = [], [], [], []
        offset = 0
        for name, p in module.named_parameters():
            names.append(name)
            shapes.append(tuple(p.shape))
            numels.append(p.numel())
            offsets.append(offset)
            offset += p.numel()
        return cls(tuple(names), tuple(shapes), tuple(numels), tuple(offsets))

    @property
    def dim(self) -> int:
        """Total length ``d`` of the flat vector."""
        return sum(self.numels)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``flat[..., d]`` into named tensors ``[..., *shape]`` (views, no copy).

        Works with any leading batch dimensions and inside :func:`torch.func.vmap`; the result
        can be passed to :func:`torch.func.functional_call`.
        """
        if flat.shape[-1] != self.dim:
            raise ValueError(f"flat parameters must have last dimension {self.dim}, got {list(flat.shape)}")
        lead = flat.shape[:-1]
        return {
            name: flat[..., o : o + k].view(*lead, *shape)
            for name, shape, k, o in zip(self.names, self.shapes, self.numels, self.offsets)
        }

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: named tensors ``[..., *shape]`` → ``[..., d]``."""
        first = tensors[self.names[0]]
        lead = first.shape[: first.dim() - len(self.shapes[0])]
        return torch.cat([tensors[name].reshape(*lead, k) for name, k in zip(self.names, self.numels)], dim=-1)


def _fan_in_bounds(module: nn.Module, spec: ParamSpec) -> torch.Tensor:
    """Per-coordinate bound ``1/sqrt(fan_in)`` of PyTorch's default Linear/Conv init, ``[d]``."""
    fan_in: dict[str, int] = {}
    for prefix, sub in module.named_modules():
        own = dict(sub.named_parameters(recurse=False))
        if not own:
            continue
        weight = own.get("weight")
        if weight is None or weight.dim() < 2:
            raise TypeError(
                f"init_stacked supports layers with a weight of dim >= 2 (Linear, Conv); "
                f"module {prefix or type(sub).__name__!r} has parameters {sorted(own)}"
            )
        fan = math.prod(weight.shape[1:])
        for name in own:
            fan_in[f"{prefix}.{name}" if prefix else name] = fan
    return torch.cat(
        [torch.full((k,), 1.0 / math.sqrt(fan_in[name])) for name, k in zip(spec.names, spec.numels)]
    )


#: initialisation schemes of :func:`init_stacked`
INIT_SCHEMES = typing.get_args(InitScheme)  # the one list: p2probust.config.parts


def init_stacked(
    module_factory: Callable[[], nn.Module],
    n: int,
    *,
    generator: torch.Generator,
    same: bool = True,
    scheme: str = "torch",
    scale: float = 1.0,
) -> torch.Tensor:
    """Initial parameters of ``n`` nodes, one flat row each, drawn from ``generator``.

    Parameters
    ----------
    module_factory : callable returning an nn.Module
        Builds the model template (called once, on the ``meta`` device: it consumes no global
        random state).
    n : int
        Number of nodes.
    generator : torch.Generator
        The only source of randomness; the same generator state gives the same rows.
    same : bool, default True
        If True (the usual setting in decentralized learning) every node starts from one common
        model; if False each node gets an independent draw (``[train] init = "per-node"``).
    scheme : str, default "torch"
        ``"torch"``: PyTorch's default Linear/Conv law, each entry ``U(−s/√fan_in, s/√fan_in)``;
        ``"normal"``: each entry ``s · N(0, 1)`` (the IOS code's ``RandomInitialize``, ``s = 6``);
        ``"zero"``: all zeros (``scale`` unused).
    scale : float, default 1.0
        ``s`` above (``[train] init_scale``), ``> 0``.

    Returns
    -------
    Tensor[n, d], float32
        Row ``i`` is node ``i``'s flat parameter vector (see :class:`ParamSpec`).

    Notes
    -----
    ``"torch"`` with ``s = 1`` reproduces PyTorch's default initialisation of ``nn.Linear`` and
    ``nn.Conv2d`` (Kaiming uniform with ``a = sqrt(5)``): every weight and bias entry of a layer is
    drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, with ``fan_in`` the layer's input size
    (``in_features``, or ``in_channels/groups · kernel area``). Drawn as one
    ``torch.rand(rows, d, generator=generator)`` (or ``torch.randn``) call, so it is fast for large
    ``n``; the ``"torch"`` rows with ``s = 1`` are the same bits as before the scheme existed.

    References
    ----------
    The ``"normal"`` scheme: Z. Wu, T. Chen, Q. Ling, IEEE TSP 2023, code
    github.com/Zhaoxian-Wu/IOS, ``ByrdLab/library/initialize.py`` (``RandomInitialize(scale=6)``,
    one seed per node: ``DSGD(consensus_init=False)``).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of nodes, got {n}")
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme {scheme!r} is invalid; expected one of: {', '.join(INIT_SCHEMES)}")
    if not scale > 0:
        raise ValueError(f"init scale {scale!r} is invalid; expected a number > 0")
    with torch.device("meta"):
        template = module_factory()
    spec = ParamSpec.from_module(template)
    rows = 1 if same else n
    if scheme == "zero":
        return torch.zeros(n, spec.dim)
    if scheme == "normal":
        params = scale * torch.randn(rows, spec.dim, generator=generator, dtype=torch.float32)
    else:
        bounds = _fan_in_bounds(template, spec)
        u = torch.rand(rows, spec.dim, generator=generator, dtype=torch.float32)
        params = (2.0 * u - 1.0) * bounds
        if scale != 1.0:
            params = params * scale
    return params.expand(n, spec.dim).clone() if same else params
