using System.Buffers.Binary;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Conversion;

/// <summary>One exported tensor: where it came from, the ggml type it became, and how exactly.</summary>
/// <param name="MaxScaleError">Largest relative change of a scale from rounding it to fp16 (0 for float and fallback
/// tensors).</param>
/// <param name="Fallback">Why a wider type than the grid's natural one was used, or null.</param>
public sealed record GgufTensorReport(string Name, string Source, WeightFormat SourceFormat, GgmlType Type, long Bytes,
    double MaxScaleError, string? Fallback);

public sealed record GgufExportReport(string Output, long FileBytes, ModelConfig Config, int Blocks,
    IReadOnlyList<GgufTensorReport> Tensors, IReadOnlyList<string> Notes);

/// <summary>
/// .pq → GGUF for llama.cpp's <c>llama</c> architecture, so llama.cpp runs the very same weights. Every grid maps onto
/// a ggml type that holds its levels exactly; the only rounding is each scale to fp16, which ggml blocks store:
/// <list type="bullet">
/// <item>binary and ternary → TQ2_0 ((q−1)·d, 256-blocks); 2-bit SEQ → Q2_K (d·sc·q − dmin·m with m = 1.5·sc);</item>
/// <item>3-bit, 4-bit (per row or group-32) → Q4_0 ((q−8)·d, 32-blocks); int8 rows → Q8_0; float tensors keep their
/// type.</item>
/// </list>
/// Rows whose length is not a multiple of 256 take Q4_0 instead of TQ2_0/Q2_K (it holds every grid's levels too), and
/// of 32, F32; a scale fp16 cannot hold to 2⁻¹¹ relative precision (overflow, subnormal) makes its tensor F32.
/// rotate_half RoPE rows of q/k are permuted to llama.cpp's interleaved pairs; shared layers are written once per use.
/// </summary>
public static class GgufExporter
{
    /// <summary>Largest relative scale change accepted from fp16 rounding: half an ulp of a normal fp16.</summary>
    public const double MaxScaleRounding = 1.0 / 2048;

    public static GgufExportReport Export(string pqPath, string output, bool overwrite, Action<int, int,
        string>? progress = null)
    {
        if (Path.GetFullPath(pqPath) == Path.GetFullPath(output)) throw new ArgumentException($"the output {output} is the input file");
        if (!overwrite
            && File.Exists(output)) throw new OutputExistsException(output);
        // Mapped: the export reads each tensor once, so a resident copy would only slow the open.
        using var model = LanguageModel.Load(pqPath, new CpuBackendOptions { Threads = 1 }, WeightMemory.Mapped);
        var c = model.Config;
        CheckRepresentable(c, pqPath);
        var tokenizer = Tokenizers.FromFile(model.File, c.VocabSize) as SentencePieceBpeTokenizer
            ?? throw new NotSupportedException($"{pqPath}: GGUF export needs a SentencePiece-style (LLaMA) tokenizer; this file's is '{model.File.Tokenizer.Kind}'");

        var gguf = new GgufWriter();
        var notes = new List<string>();
        WriteMetadata(gguf, model.File, c, tokenizer, notes);

        var reports = new List<GgufTensorReport>();
        void Add(string name, TensorSpec spec)
        {
            var tensor = model.File[spec.Name];
            bool permute = c.RopeLayout == RopeLayout.RotateHalf && spec.Role is TensorRole.Query or TensorRole.Key;
            var plan = Plan(tensor, spec, permute ? spec.Role == TensorRole.Query ? c.NumHeads : c.NumKvHeads : 0,
                c.HeadDim);
            long[] dims = spec.IsNorm ? [spec.Cols] : [spec.Cols, spec.Rows];
            gguf.AddTensor(name, plan.Type, dims, plan.Encode);
            reports.Add(new GgufTensorReport(name, spec.Name, tensor.Format, plan.Type,
                GgmlTypes.RowBytes(plan.Type, spec.Cols) * (spec.IsNorm ? 1 : spec.Rows), plan.MaxScaleError,
                plan.Fallback));
        }

        var specs = ModelTensors.For(c).ToList();
        Add("token_embd.weight", specs.Single(s => s.Role == TensorRole.Embedding));
        for (int layer = 0; layer < c.NumLayers; layer++)
            for (int repeat = 0; repeat < c.LayerRepeat; repeat++)
            {
                int block = layer * c.LayerRepeat + repeat;
                foreach (var spec in specs.Where(s
                    => s.Name.StartsWith($"model.layers.{layer}.", StringComparison.Ordinal)))
                    Add($"blk.{block}.{LayerTensorName(spec.Role)}.weight", spec);
            }
        Add("output_norm.weight", specs.Single(s => s.Role == TensorRole.FinalNorm));
        if (!c.TieWordEmbeddings) Add("output.weight", specs.Single(s => s.Role == TensorRole.Head));
        if (c.LayerRepeat > 1) notes.Add($"layer sharing: each of the {c.NumLayers} weight layers is written {c.LayerRepeat} times ({c.EffectiveLayers} GGUF blocks), since GGUF has no shared layers");
        if (c.RopeLayout == RopeLayout.RotateHalf) notes.Add("q/k rows permuted from rotate-half to llama.cpp's interleaved RoPE pairs (exact)");

        gguf.Write(output, overwrite, progress);
        return new GgufExportReport(Path.GetFullPath(output), new FileInfo(output).Length, c, c.EffectiveLayers,
            reports, notes);
    }

    // What llama.cpp's llama architecture cannot express is refused, never approximated.
    private static void CheckRepresentable(ModelConfig c, string path)
    {
        string? why = c.Architecture != "mobilellm"
            ? $"architecture {c.Architecture} (local/global attention, QK-norm and NoPE layers are not llama.cpp's llama architecture)"
            : c.LayerTypes.Any(t => t != AttentionKind.Global) ? "sliding-window layers"
            : c.UseQkNorm ? "QK-norm"
            : c.RopeLayers.Any(r => !r) ? "NoPE layers"
            : c.TemperatureTuning is not null ? "attention temperature tuning"
            : c.RopeScaling is not null ? "llama3 RoPE scaling"
            : null;
        if (why is not null) throw new NotSupportedException($"{path}: GGUF export covers MobileLLM v1 / LLaMA-architecture models; this model has {why}");
    }

    private static void WriteMetadata(GgufWriter gguf, PqFile file, ModelConfig c, SentencePieceBpeTokenizer tokenizer,
        List<string> notes)
    {
        gguf.Add("general.architecture", "llama");
        gguf.Add("general.name", Path.GetFileNameWithoutExtension(file.Path));
        gguf.Add("general.source.url", file.Provenance.Source);
        gguf.Add("general.quantization_version", 2u);
        gguf.Add("llama.vocab_size", (uint)c.VocabSize);
        gguf.Add("llama.context_length", (uint)c.MaxPositionEmbeddings);
        gguf.Add("llama.embedding_length", (uint)c.HiddenSize);
        gguf.Add("llama.block_count", (uint)c.EffectiveLayers);
        gguf.Add("llama.feed_forward_length", (uint)c.IntermediateSize);
        gguf.Add("llama.attention.head_count", (uint)c.NumHeads);
        gguf.Add("llama.attention.head_count_kv", (uint)c.NumKvHeads);
        gguf.Add("llama.attention.key_length", (uint)c.HeadDim);
        gguf.Add("llama.attention.value_length", (uint)c.HeadDim);
        gguf.Add("llama.attention.layer_norm_rms_epsilon", c.RmsNormEps);
        gguf.Add("llama.rope.freq_base", (float)c.RopeTheta);
        gguf.Add("llama.rope.dimension_count", (uint)c.HeadDim);

        // The vocabulary is the model's: ids the tokenizer does not use become unused pieces.
        var pieces = tokenizer.Pieces().ToList();
        for (int id = pieces.Count; id < c.VocabSize; id++) pieces.Add(new SentencePiece($"<unused{id}>",
            pieces.Min(p => p.Score), PieceType.Unused));
        if (pieces.Count > tokenizer.VocabSize) notes.Add($"vocabulary padded from {tokenizer.VocabSize} to the model's {c.VocabSize} ids with unused pieces");
        gguf.Add("tokenizer.ggml.model", "llama");
        gguf.Add("tokenizer.ggml.tokens", pieces.Select(p => p.Piece).ToArray());
        gguf.Add("tokenizer.ggml.scores", pieces.Select(p => p.Score).ToArray());
        gguf.Add("tokenizer.ggml.token_type", pieces.Select(p => (int)p.Type).ToArray());
        var info = file.Tokenizer;
        if (info.BosId >= 0) gguf.Add("tokenizer.ggml.bos_token_id", (uint)info.BosId);
        if (info.EosIds.Count > 0) gguf.Add("tokenizer.ggml.eos_token_id", (uint)info.EosIds[0]);
        if (info.EosIds.Count > 1) notes.Add($"GGUF holds one end-of-sequence id: {info.EosIds[0]} kept, {string.Join(", ", info.EosIds.Skip(1))} dropped");
        if (tokenizer.UnknownId >= 0) gguf.Add("tokenizer.ggml.unknown_token_id", (uint)tokenizer.UnknownId);
        if (info.PadId >= 0) gguf.Add("tokenizer.ggml.padding_token_id", (uint)info.PadId);
        gguf.Add("tokenizer.ggml.add_bos_token", info.BosId >= 0);
        gguf.Add("tokenizer.ggml.add_eos_token", false);
        gguf.Add("tokenizer.ggml.add_space_prefix", true);
        if (info.ChatTemplate is not null) gguf.Add("tokenizer.chat_template", info.ChatTemplate);
    }

    private static string LayerTensorName(TensorRole role) => role switch
    {
        TensorRole.AttentionNorm => "attn_norm",
        TensorRole.Query => "attn_q",
        TensorRole.Key => "attn_k",
        TensorRole.Value => "attn_v",
        TensorRole.Output => "attn_output",
        TensorRole.FfnNorm => "ffn_norm",
        TensorRole.Gate => "ffn_gate",
        TensorRole.Up => "ffn_up",
        TensorRole.Down => "ffn_down",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "not a layer tensor"),
    };

    private sealed record TensorPlan(GgmlType Type, double MaxScaleError, string? Fallback, Func<byte[]> Encode);

    private static TensorPlan Plan(PqTensor tensor, TensorSpec spec, int permuteHeads, int headDim)
    {
        int rows = spec.Rows, cols = spec.Cols;
        // GGUF row r holds .pq row SourceRow(r): rotate-half pairs (i, i+hd/2) become interleaved pairs (2i, 2i+1).
        int SourceRow(int r) => permuteHeads == 0 ? r
            : r / headDim * headDim + (r % headDim % 2) * (headDim / 2) + r % headDim / 2;

        if (WeightFormats.IsFloat(tensor.Format))
        {
            var type = WeightFormats.Of(tensor.Format).Gguf;
            int rowBytes = cols * FloatCodec.ElementBytes(tensor.Format);
            return new TensorPlan(type, 0, null, () =>
            {
                var src = tensor.Data;
                var bytes = new byte[(long)rowBytes * rows];
                for (int r = 0; r < rows; r++) src.Slice(SourceRow(r) * rowBytes,
                    rowBytes).CopyTo(bytes.AsSpan(r * rowBytes));
                return bytes;
            });
        }

        var format = tensor.Format;
        var layout = new PackedLayout(format, rows, cols);
        // A value is step · level: step = a · Multiplier (a the effective scale), level = A · code − B, a small
        // integer, so every ggml block type whose integer range covers the levels holds the grid exactly.
        var info = WeightFormats.Of(format);
        var (multiplier, offset, factor) = (info.Affine.A, info.Affine.B, info.Affine.Multiplier);
        GgmlType natural = info.Gguf;
        string? fallback = null;
        GgmlType chosen = natural;
        if (cols % GgmlTypes.Block(natural).Elements != 0)
        {
            // Q4_0 holds every grid's levels but int8's; a row that is not whole 32-blocks fits no block type.
            chosen = cols % 32 == 0 ? GgmlType.Q4_0 : GgmlType.F32;
            fallback = $"rows of {cols} are not whole {natural} blocks of {GgmlTypes.Block(natural).Elements}";
        }

        // The step of each (row, group): the value of one level, and the fp16 step the ggml block will hold.
        double maxError = 0;
        bool scalesFit = true;
        for (int r = 0; r < rows && chosen != GgmlType.F32; r++)
            for (int g = 0; g < layout.GroupsPerRow; g++)
            {
                float step = StepOf(layout, tensor.Data, r, g, factor);
                float stored = chosen == GgmlType.Q2_K ? Q2KScales(step * 2).Product / 2 : (float)(Half)step;
                double error = step == 0 ? 0 : Math.Abs((double)stored - step) / step;
                if (!(error <= MaxScaleRounding)) scalesFit = false;
                maxError = Math.Max(maxError, double.IsFinite(error) ? error : double.PositiveInfinity);
            }
        if (!scalesFit)
        {
            fallback = $"a scale is outside fp16's normal range (relative rounding {maxError:G3})";
            chosen = GgmlType.F32;
        }
        if (chosen == GgmlType.F32) maxError = 0;

        return new TensorPlan(chosen, maxError, fallback, () =>
        {
            var src = tensor.Data;
            long rowBytes = GgmlTypes.RowBytes(chosen, cols);
            var bytes = new byte[rowBytes * rows];
            var codes = new byte[layout.PaddedCols];
            var levels = new int[layout.PaddedCols];
            var twoBit = new byte[256];
            for (int r = 0; r < rows; r++)
            {
                int s = SourceRow(r);
                var dst = bytes.AsSpan((int)(r * rowBytes), (int)rowBytes);
                WeightPacker.UnpackRow(layout, src, s, codes);
                for (int k = 0; k < cols; k++) levels[k] = multiplier * codes[k] - offset;
                switch (chosen)
                {
                    case GgmlType.F32:
                        for (int k = 0; k < cols; k++)
                            BinaryPrimitives.WriteSingleLittleEndian(dst[(k * 4)..],
                                Quantizer.Dequantize(format, codes[k],
                                WeightPacker.Scale(layout, src, s, k / layout.GroupSize)));
                        break;
                    case GgmlType.Q8_0:
                        for (int b = 0; b < cols / 32; b++)
                        {
                            var block = dst.Slice(b * 34, 34);
                            BinaryPrimitives.WriteHalfLittleEndian(block,
                                (Half)StepOf(layout, src, s, b * 32 / layout.GroupSize, factor));
                            for (int i = 0; i < 32; i++) block[2 + i] = (byte)(sbyte)levels[b * 32 + i];
                        }
                        break;
                    case GgmlType.Q4_0:
                        for (int b = 0; b < cols / 32; b++)
                        {
                            var block = dst.Slice(b * 18, 18);
                            BinaryPrimitives.WriteHalfLittleEndian(block,
                                (Half)StepOf(layout, src, s, b * 32 / layout.GroupSize, factor));
                            for (int i = 0; i < 16; i++) block[2 + i] = (byte)((levels[b * 32 + i] + 8) | (levels[b * 32 + 16 + i] + 8) << 4);
                        }
                        break;
                    case GgmlType.TQ2_0:
                        for (int b = 0; b < cols / 256; b++)
                        {
                            var block = dst.Slice(b * 66, 66);
                            for (int i = 0; i < 256; i++) twoBit[i] = (byte)(levels[b * 256 + i] + 1); // (q − 1)·d
                            PackTwoBitSuperBlock(twoBit, block[..64]);
                            BinaryPrimitives.WriteHalfLittleEndian(block[64..],
                                (Half)StepOf(layout, src, s, 0, factor));
                        }
                        break;
                    case GgmlType.Q2_K:
                        {
                            // levels 2c−3 at step a/4 are the codes c at step a/2 minus 1.5 steps: q = c, d·sc = a/2,
                            // dmin·m = 0.75a.
                            var (d, sc, m, _) = Q2KScales(StepOf(layout, src, s, 0, factor) * 2);
                            for (int b = 0; b < cols / 256; b++)
                            {
                                var block = dst.Slice(b * 84, 84);
                                block[..16].Fill((byte)(sc | m << 4));
                                PackTwoBitSuperBlock(codes.AsSpan(b * 256, 256), block.Slice(16, 64));
                                BinaryPrimitives.WriteHalfLittleEndian(block[80..], d);
                                BinaryPrimitives.WriteHalfLittleEndian(block[82..], d);
                            }
                            break;
                        }
                }
            }
            return bytes;
        });
    }

    /// <summary>The value of one level in (row, group): the effective scale times the format's factor.</summary>
    private static float StepOf(in PackedLayout layout, ReadOnlySpan<byte> tensor, int row, int group, float factor) =>
        Quantizer.EffectiveScale(layout.Format, WeightPacker.Scale(layout, tensor, row, group)) * factor;

    /// <summary>
    /// Q2_K's sub-block scale sc (4 bits) and min m = 1.5·sc with one fp16 d = dmin, chosen so d·sc is closest to
    /// <paramref name="unit"/>: sc = 2, 6 or 10 give different fp16 roundings (4 and 8 repeat 2's).
    /// </summary>
    private static (Half D, int Sc, int M, float Product) Q2KScales(float unit)
    {
        var best = (D: (Half)(unit / 2), Sc: 2, M: 3, Product: (float)(Half)(unit / 2) * 2);
        foreach (int sc in (int[])[6, 10])
        {
            var d = (Half)(unit / sc);
            float product = (float)d * sc;
            if (Math.Abs(product - unit) < Math.Abs(best.Product - unit)) best = (d, sc, sc * 3 / 2, product);
        }
        return best;
    }

    /// <summary>
    /// The 2-bit code order TQ2_0 and Q2_K share: in each 128-element half of a 256-block, element 32j + l sits in byte
    /// l of the half's 32 bytes, bits 2j..2j+1.
    /// </summary>
    private static void PackTwoBitSuperBlock(ReadOnlySpan<byte> codes, Span<byte> qs)
    {
        qs.Clear();
        for (int e = 0; e < 256; e++)
            qs[e / 128 * 32 + e % 32] |= (byte)(codes[e] << (e % 128 / 32 * 2));
    }
}
