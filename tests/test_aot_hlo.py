"""Collectives read from compiled HLO text: kinds, operand bytes, and runs inside loops."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax.aot import hlo

# The shape of a TPU program's text (trimmed from a v5e compile): operands are named without
# their shapes, async collectives come as -start/-done pairs, and a scan is a while loop whose
# condition compares the counter with a constant.
TPU_TEXT = """
HloModule jit_step

%cond (p: (s32[], f32[16,1024])) -> pred[] {
  %constant.1 = s32[]{:T(128)} constant(24)
  %p = (s32[]{:T(128)}, f32[16,1024]{1,0}) parameter(0)
  %gte = s32[]{:T(128)} get-tuple-element(%p), index=0
  ROOT %lt = pred[]{:T(512)} compare(%gte, %constant.1), direction=LT
}

%body (p.1: (s32[], f32[16,1024])) -> (s32[], f32[16,1024]) {
  %p.1 = (s32[]{:T(128)}, f32[16,1024]{1,0}) parameter(0)
  %x = f32[16,1024]{1,0:T(8,128)} get-tuple-element(%p.1), index=1
  %all-reduce.9 = f32[16,1024]{1,0:T(8,128)} all-reduce(%x), channel_id=4, to_apply=%add
  %i = s32[]{:T(128)} get-tuple-element(%p.1), index=0
  ROOT %t = (s32[]{:T(128)}, f32[16,1024]{1,0}) tuple(%i, %all-reduce.9)
}

ENTRY %main (param.1: f32[12845312], param.2: f32[16,224,224,3]) -> f32[12845312] {
  %param.1 = f32[12845312]{0:T(1024)} parameter(0)
  %param.2 = f32[16,224,224,3]{2,1,3,0:T(8,128)} parameter(1)
  %all-reduce.2 = f32[12845312]{0:T(1024)S(1)} all-reduce(%param.1), channel_id=8, to_apply=%add
  %collective-permute-start.1 = (f32[16,224,224,3]{2,1,3,0}, f32[16,224,224,3]{2,1,3,0}, u32[]{:S(2)}, u32[]{:S(2)}) collective-permute-start(%param.2), channel_id=3
  %collective-permute-done.1 = f32[16,224,224,3]{2,1,3,0} collective-permute-done(%collective-permute-start.1)
  %init = (s32[]{:T(128)}, f32[16,1024]{1,0}) tuple(%zero, %ones)
  %while.1 = (s32[]{:T(128)}, f32[16,1024]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %r = f32[12845312]{0} copy(%all-reduce.2)
}
"""  # noqa: E501


def test_tpu_text_operands_by_name_async_pairs_and_loop_trips():
    ops = {op.name: op for op in hlo.collectives(TPU_TEXT)}
    assert set(ops) == {"all-reduce.2", "collective-permute-start.1", "all-reduce.9"}
    assert ops["all-reduce.2"].bytes == 12_845_312 * 4 and ops["all-reduce.2"].runs == 1
    assert ops["collective-permute-start.1"].largest == ("f32", (16, 224, 224, 3))
    assert ops["all-reduce.9"].runs == 24 and not ops["all-reduce.9"].unknown_trips
    summary = hlo.by_kind(list(ops.values()))
    assert summary["all-reduce"] == {
        "count": 2,
        "runs": 25,
        "bytes": 12_845_312 * 4 + 24 * 16 * 1024 * 4,
        "largest": "f32[12845312]",
    }


def test_a_cpu_program_sums_a_sharded_array_once_per_loop_iteration():
    mesh = jax.make_mesh((4,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = NamedSharding(mesh, P("d"))

    def f(x):
        def body(c, _):  # each iteration sums the sharded x, which depends on the carry
            return c + jnp.sum(jnp.sin(x * c)), None

        return jax.lax.scan(body, jnp.float32(1.0), None, length=3)[0]

    compiled = jax.jit(f, in_shardings=sharded).lower(jnp.ones(64)).compile()
    ops = hlo.collectives(compiled.as_text())
    assert [(op.kind, op.runs) for op in ops] == [("all-reduce", 3)]
    assert ops[0].bytes == 4  # one float per device per iteration
