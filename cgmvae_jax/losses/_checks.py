"""Input conversion and shape checks shared by the loss families (private)."""

import jax
import jax.numpy as jnp

# Full float32 matrix products (TPU/GPU defaults may round operands to bfloat16/TF32).
HIGHEST = jax.lax.Precision.HIGHEST


def as_float(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """Returns `x` as an array of at least float32 precision; TypeError if not floating."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`{name}` must have a floating dtype, got {x.dtype}.")
    # bfloat16 / float16 are promoted so that sums and log-sum-exps run in float32.
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def as_mask(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """Returns a boolean array that is True where `x` is non-zero."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        return x
    return x != 0


def broadcast_shapes(*named: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """`jnp.broadcast_shapes` of the named shapes, with a ValueError naming all of them."""
    try:
        return jnp.broadcast_shapes(*(tuple(s) for _, s in named))
    except ValueError:
        described = " and ".join(f"`{n}` {tuple(s)}" for n, s in named)
        raise ValueError(f"Incompatible shapes: {described} do not broadcast.") from None


def check_ndim(name: str, x: jax.Array, min_ndim: int, what: str) -> None:
    if x.ndim < min_ndim:
        raise ValueError(f"`{name}` must have shape {what}, got shape {x.shape}.")


def check_axis(name_a: str, a: jax.Array, name_b: str, b: jax.Array, axis_b: int) -> None:
    """ValueError unless the last axis of `a` equals axis `axis_b` of `b`."""
    if a.shape[-1] != b.shape[axis_b]:
        raise ValueError(
            f"Size mismatch: `{name_a}` has shape {a.shape} and `{name_b}` has shape {b.shape}; "
            f"the last axis of `{name_a}` must equal axis {axis_b} of `{name_b}`."
        )


def broadcast_floats(**named: jax.typing.ArrayLike) -> tuple[list[jax.Array], tuple[int, ...]]:
    """Float arrays of the named inputs (`as_float`) and their broadcast shape ``[..., d]``.

    Raises TypeError if an input is not floating, ValueError (naming every input's shape) if
    the shapes do not broadcast or the broadcast shape is a scalar.
    """
    arrays = [as_float(name, x) for name, x in named.items()]
    described = [(name, x.shape) for name, x in zip(named, arrays, strict=True)]
    shape = broadcast_shapes(*described)
    if not shape:
        shapes = ", ".join(f"`{name}` {s}" for name, s in described)
        raise ValueError(f"Expected inputs of shape [..., d], got {shapes}.")
    return arrays, shape
