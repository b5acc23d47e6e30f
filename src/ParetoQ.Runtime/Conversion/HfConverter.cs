using System.Globalization;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Conversion;

/// <summary>What the converter does with the projection weights (<c>--bits</c>).</summary>
public enum BitsChoice
{
    /// <summary>Snapped grids are detected (or named by config.json's w_bits); latent weights use their clip values;
    /// MobileLLM-Pro BF16 becomes int4 group-32.</summary>
    Auto,
    Binary, Ternary, Bits2, Bits3, Bits4,
    /// <summary>int4 symmetric, one scale per 32 inputs (<see cref="WeightFormat.Q4G32"/>).</summary>
    Int4,
    /// <summary>int8, one scale per row (<see cref="WeightFormat.I8Row"/>).</summary>
    Int8,
    BF16, F16, F32,
}

public sealed record ConversionOptions
{
    public BitsChoice Bits { get; init; } = BitsChoice.Auto;
    /// <summary>Format of the embedding (and the head, tied or not).</summary>
    public WeightFormat Head { get; init; } = WeightFormat.I8Row;
    public bool Overwrite { get; init; }
    /// <summary>Called after each tensor: (done, total, tensor name).</summary>
    public Action<int, int, string>? Progress { get; init; }
    public string Tool { get; init; } = "paretoq-convert";

    /// <summary>--bits: auto, or a weight format as every program spells it (<see cref="WeightFormats.TryParseOption"/>:
    /// 1, 1.58, 2, 3, 4 or a format name).</summary>
    public static readonly IReadOnlyDictionary<string, BitsChoice> BitsNames = new[] { "auto" }
        .Concat(WeightFormats.OptionNames(f => Choice(f) is not null))
        .ToDictionary(name => name, name => name == "auto" ? BitsChoice.Auto
            : Choice(WeightFormats.ParseOption(name))!.Value, StringComparer.Ordinal);

    /// <summary>--head: <see cref="WeightFormats.HeadFormats"/>, by name.</summary>
    public static readonly IReadOnlyDictionary<string, WeightFormat> HeadNames = WeightFormats.HeadFormats
        .ToDictionary(WeightFormats.Name, f => f, StringComparer.Ordinal);

    private static BitsChoice? Choice(WeightFormat format) => format switch
    {
        WeightFormat.Binary => BitsChoice.Binary, WeightFormat.Ternary => BitsChoice.Ternary,
        WeightFormat.Q2Seq => BitsChoice.Bits2, WeightFormat.Q3Row => BitsChoice.Bits3,
        WeightFormat.Q4Row => BitsChoice.Bits4, WeightFormat.Q4G32 => BitsChoice.Int4,
        WeightFormat.I8Row => BitsChoice.Int8, WeightFormat.BF16 => BitsChoice.BF16, WeightFormat.F16 => BitsChoice.F16,
        WeightFormat.F32 => BitsChoice.F32, _ => null,
    };
}

/// <summary>How one tensor was produced.</summary>
public enum TensorOrigin
{
    /// <summary>Stored values already on a ParetoQ grid; α and codes recovered, every value reproduced
    /// exactly.</summary>
    Snapped,
    /// <summary>Latent weights quantized with the checkpoint's trained per-row clip values
    /// (<c>weight_clip_val</c>).</summary>
    TrainedClip,
    /// <summary>Per-channel int4 with the checkpoint's <c>weight_fake_quantizer.scale</c>.</summary>
    FakeQuantScale,
    /// <summary>Round-to-nearest post-training quantization with the initial scale rule.</summary>
    RoundToNearest,
    /// <summary>Kept as floating point.</summary>
    Float,
}

/// <param name="MaxError">Snapped: max |runtime value − stored value|. Others: max |runtime value − source
/// value|.</param>
/// <param name="RelativeError">‖runtime − source‖ / ‖source‖ over the tensor.</param>
public sealed record TensorReport(TensorSpec Spec, TensorOrigin Origin, WeightFormat Format, long Bytes,
    double MaxError, double RelativeError)
{
    public string Name => Spec.Name;
    public int Rows => Spec.Rows;
    public int Cols => Spec.Cols;
    public bool IsProjection => Spec.IsProjection;
}

public sealed record ConversionReport(string Output, long FileBytes, HfConfig Source, HfTokenizer Tokenizer,
    string WeightFiles, IReadOnlyList<TensorReport> Tensors, IReadOnlyList<string> Notes)
{
    private IEnumerable<TensorReport> Projections => Tensors.Where(t => t.IsProjection);

    /// <summary>Stored bits per weight of the quantized projections (codes and scales).</summary>
    public double ProjectionBitsPerWeight
        => Projections.Sum(t => t.Bytes) * 8.0 / Math.Max(1, Projections.Sum(t => (long)t.Rows * t.Cols));

    /// <summary>File bits per model parameter (embedding counted once when tied).</summary>
    public double FileBitsPerWeight => FileBytes * 8.0 / Math.Max(1, Tensors.Sum(t => (long)t.Rows * t.Cols));
}

/// <summary>
/// Converts a Hugging Face checkpoint directory (config.json, weights in safetensors or pytorch_model.bin, tokenizer
/// files) into one .pq file. Names are mapped onto <see cref="ModelTensors"/>; every source tensor must be used or be a
/// known derived buffer, and every projection's origin and reconstruction error is reported.
/// </summary>
public static class HfConverter
{
    public static ConversionReport Convert(string directory, string output, ConversionOptions options)
    {
        CheckOptions(output, options);
        var hf = HfConfig.Read(directory);
        var tokenizer = HfTokenizer.Read(directory, hf);
        using var source = SourceCheckpoint.Open(directory);
        return Convert(directory, hf, tokenizer, source, output, options);
    }

    /// <summary>Converts a llama2.c checkpoint (<c>model.bin</c>) with its <c>tokenizer.bin</c>.</summary>
    public static ConversionReport ConvertLlama2c(string checkpoint, string tokenizerPath, string output,
        ConversionOptions options)
    {
        CheckOptions(output, options);
        using var source = Llama2cCheckpoint.Open(checkpoint);
        var (hf, tokenizer) = source.Describe(tokenizerPath);
        return Convert(checkpoint, hf, tokenizer, source, output, options);
    }

    /// <summary>Converts a GGUF file of llama.cpp's <c>llama</c> architecture (<see cref="GgufCheckpoint"/>).</summary>
    public static ConversionReport ConvertGguf(string path, string output, ConversionOptions options)
    {
        CheckOptions(output, options);
        using var source = GgufCheckpoint.Open(path);
        var (hf, tokenizer) = source.Describe();
        return Convert(path, hf, tokenizer, source, output, options);
    }

    /// <summary>Requantizes a .pq file (<see cref="PqCheckpoint"/>): PTQ with <c>--bits</c>, or a new head
    /// format.</summary>
    public static ConversionReport ConvertPq(string path, string output, ConversionOptions options)
    {
        if (Path.GetFullPath(path) == Path.GetFullPath(output))
            throw new ArgumentException($"the output {output} is the input file; write the requantized model elsewhere");
        CheckOptions(output, options);
        using var source = PqCheckpoint.Open(path);
        var (hf, tokenizer) = source.Describe();
        return Convert(path, hf, tokenizer, source, output, options);
    }

    private static void CheckOptions(string output, ConversionOptions options)
    {
        if (!options.Overwrite
            && File.Exists(output)) throw new OutputExistsException(output);
        if (options.Head is not (WeightFormat.I8Row or WeightFormat.Q4G32) && !WeightFormats.IsFloat(options.Head))
            throw new ArgumentException($"the head format must be one of {string.Join(", ", ConversionOptions.HeadNames.Keys)}, not {WeightFormats.Name(options.Head)}");
    }

    /// <summary>The one conversion: <paramref name="origin"/> (a directory or a file) names the source in errors and
    /// provenance.</summary>
    private static ConversionReport Convert(string origin, HfConfig hf, HfTokenizer tokenizer,
        ISourceCheckpoint source, string output, ConversionOptions options)
    {
        var config = hf.Config;
        var notes = new List<string>(hf.Notes.Concat(tokenizer.Notes));
        var used = new HashSet<string>(StringComparer.Ordinal);

        SourceTensor Find(string name)
        {
            // MobileLLM-Pro (Llama-4) names the MLP feed_forward.*.
            foreach (string candidate in new[] { name,
                name.Replace(".mlp.", ".feed_forward.", StringComparison.Ordinal) })
                if (FindOptional(source, candidate, used) is { } t) return t;
            throw new CheckpointException(origin, name, "is missing from the checkpoint");
        }

        var writer = new PqWriter(config.ToJson(),
            new PqProvenance(Path.GetFullPath(origin), "", options.Tool, new Dictionary<string, string>()));
        writer.SetTokenizer(tokenizer.Info, tokenizer.Bytes);
        var reports = new List<TensorReport>();
        var specs = ModelTensors.For(config).ToList();
        foreach (var spec in specs)
        {
            var src = Find(spec.Name);
            long expected = spec.IsNorm ? spec.Cols : (long)spec.Rows * spec.Cols;
            bool shapeOk = spec.IsNorm ? src.Shape is [var n] && n == spec.Cols : src.Shape is [var r, var c]
                && r == spec.Rows && c == spec.Cols;
            if (!shapeOk) throw new CheckpointException(src.File, src.Name,
                $"has shape [{string.Join(", ", src.Shape)}], but the config needs [{(spec.IsNorm ? $"{spec.Cols}" : $"{spec.Rows}, {spec.Cols}")}]");
            float[] w = source.ReadAll(src);
            if (spec.IsNorm)
            {
                writer.AddFloatTensor(spec.Name, WeightFormat.F32, [spec.Cols], w);
                reports.Add(new TensorReport(spec, TensorOrigin.Float, WeightFormat.F32, spec.Cols * 4L, 0, 0));
            }
            else if (spec.Role is TensorRole.Embedding or TensorRole.Head)
            {
                if (spec.Role == TensorRole.Embedding && config.TieWordEmbeddings
                    && FindOptional(source, "lm_head.weight", used) is { } head
                    && !source.ReadAll(head).AsSpan().SequenceEqual(w))
                    throw new CheckpointException(head.File, head.Name,
                        "differs from model.embed_tokens.weight, but config.json ties the head to the embedding");
                reports.Add(AddPlain(writer, spec, w, options.Head));
            }
            else
            {
                reports.Add(AddProjection(writer, spec, src, w, source, hf, options, used, notes));
            }
            options.Progress?.Invoke(reports.Count, specs.Count, spec.Name);
        }

        var unused = source.Tensors.Select(t => t.Name).Where(n => !used.Contains(n)
            && !n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (unused.Count > 0)
            throw new CheckpointException(origin, null,
                $"{unused.Count} tensor(s) the model does not use, so the checkpoint holds something not implemented: {string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", …" : "")}");

        if (source is GgufCheckpoint) notes.AddRange(GgufOutcomes(source, reports));

        var projectionFormats = reports.Where(r => r.IsProjection).Select(r => r.Format).Distinct().ToList();
        string bits = projectionFormats.Count == 1
            ? WeightFormats.NominalBits(projectionFormats[0]).ToString(CultureInfo.InvariantCulture) : "mixed";
        writer.Provenance = new PqProvenance(Path.GetFullPath(origin), bits, options.Tool, new Dictionary<string,
            string>
        {
            ["source_family"] = hf.Family.ToString(),
            ["source_files"] = string.Join(", ", source.Files.Select(Path.GetFileName)),
            ["bits_option"] = ConversionOptions.BitsNames.First(kv => kv.Value == options.Bits).Key,
            ["head"] = WeightFormats.Name(options.Head),
            ["projection_origin"] = string.Join(", ",
                reports.Where(r => r.IsProjection).Select(r => r.Origin.ToString()).Distinct()),
        });
        writer.Write(output, options.Overwrite);
        return new ConversionReport(output, new FileInfo(output).Length, hf, tokenizer,
            string.Join(", ", source.Files.Select(Path.GetFileName)), reports, notes);
    }

    private static SourceTensor? FindOptional(ISourceCheckpoint source, string name, HashSet<string> used)
    {
        if (!source.TryGet(name, out var t)) return null;
        used.Add(name);
        return t;
    }

    private static TensorReport AddProjection(PqWriter writer, TensorSpec spec, SourceTensor src, float[] w,
        ISourceCheckpoint source, HfConfig hf, ConversionOptions options, HashSet<string> used, List<string> notes)
    {
        string baseName = src.Name[..^".weight".Length];
        if (FindOptional(source, baseName + ".weight_clip_val", used) is { } clip)
        {
            var format = ParetoQFormat(options.Bits) ?? FromWBits(hf.WBits)
                ?? throw new CheckpointException(clip.File, clip.Name,
                    "gives trained clip values but neither --bits nor config.json's w_bits says which ParetoQ grid they belong to");
            return AddQuantized(writer, spec, w, format, TensorOrigin.TrainedClip,
                ReadRowScales(source, clip, spec.Rows), notes);
        }
        if (FindOptional(source, baseName + ".weight_fake_quantizer.scale", used) is { } scale)
        {
            if (options.Bits is not (BitsChoice.Auto or BitsChoice.Bits4)) throw new CheckpointException(scale.File,
                scale.Name, "is a per-channel int4 scale; only --bits auto or 4 can use it");
            float[] s = ReadRowScales(source, scale, spec.Rows);
            int tiny = Array.FindIndex(s, v => v < Quantizer.MinAlpha);
            if (tiny >= 0) throw new CheckpointException(scale.File, scale.Name,
                $"row {tiny} has scale {s[tiny]}, below the 1e-5 the 4-bit kernels clamp to");
            return AddQuantized(writer, spec, w, WeightFormat.Q4Row, TensorOrigin.FakeQuantScale, s);
        }

        switch (options.Bits)
        {
            case BitsChoice.BF16: return AddPlain(writer, spec, w, WeightFormat.BF16);
            case BitsChoice.F16: return AddPlain(writer, spec, w, WeightFormat.F16);
            case BitsChoice.F32: return AddPlain(writer, spec, w, WeightFormat.F32);
            case BitsChoice.Int4: return AddQuantized(writer, spec, w, WeightFormat.Q4G32, TensorOrigin.RoundToNearest,
                null);
            case BitsChoice.Int8: return AddQuantized(writer, spec, w, WeightFormat.I8Row, TensorOrigin.RoundToNearest,
                null);
        }
        var codes = new byte[w.Length]; // one buffer for every grid tried
        if (ParetoQFormat(options.Bits) is { } chosen)
        {
            // Snapped values are recovered exactly; a full-precision source is quantized round-to-nearest (PTQ),
            // unless config.json says the checkpoint is QAT-snapped, in which case an off-grid row is an error.
            if (TryAddSnapped(writer, spec, src, w, chosen, codes, out var report, out string? failure)) return report!;
            if (FromWBits(hf.WBits) is not null) throw new CheckpointException(src.File, src.Name, failure!);
            return AddQuantized(writer, spec, w, chosen, TensorOrigin.RoundToNearest, null, notes);
        }
        if (FromWBits(hf.WBits) is { } declared)
        {
            if (TryAddSnapped(writer, spec, src, w, declared, codes, out var report,
                out string? failure)) return report!;
            throw new CheckpointException(src.File, src.Name,
                $"{failure} (config.json has w_bits {hf.WBits}; pass --bits to quantize it anew)");
        }
        if (src.Ggml is { } ggml)
        {
            // A GGUF block type: the .pq grids that can hold its values, tried exactly; otherwise its values are kept
            // as they are, in f32, which holds every ggml block value exactly.
            foreach (var grid in GridsHolding(ggml))
                if (TryAddSnapped(writer, spec, src, w, grid, codes, out var exact, out _)) return exact!;
            if (ggml == GgmlType.Q4_0 && TryAddSnappedGroups(writer, spec, w, codes, out var grouped)) return grouped!;
            return AddPlain(writer, spec, w, WeightFormat.F32);
        }
        foreach (var grid in GridRecovery.Grids)
            if (TryAddSnapped(writer, spec, src, w, grid, codes, out var report, out _)) return report!;
        if (hf.WBits is null && hf.Family == SourceFamily.MobileLlmPro)
            return AddQuantized(writer, spec, w, WeightFormat.Q4G32, TensorOrigin.RoundToNearest, null);
        // An ordinary full-precision model: kept at the precision it came in, and said so.
        var kept = src.DType switch { SourceDType.BF16 => WeightFormat.BF16, SourceDType.F16 => WeightFormat.F16, _
            => WeightFormat.F32 };
        string note = $"full-precision projections kept as {WeightFormats.Name(kept)}, the checkpoint's own precision (--bits 1|1.58|2|3|4, q4_g32 or i8_row quantizes them)";
        if (!notes.Contains(note)) notes.Add(note);
        return AddPlain(writer, spec, w, kept);
    }

    private static bool TryAddSnapped(PqWriter writer, TensorSpec spec, SourceTensor src, float[] w,
        WeightFormat format, byte[] codes, out TensorReport? report, out string? failure)
    {
        var alphas = new float[spec.Rows];
        double maxError = 0, errSq = 0, normSq = 0;
        for (int r = 0; r < spec.Rows; r++)
        {
            var row = w.AsSpan(r * spec.Cols, spec.Cols);
            if (!GridRecovery.TryRecoverRow(format, row, src.DType, codes.AsSpan(r * spec.Cols, spec.Cols),
                out alphas[r], out float rowError))
            {
                report = null;
                failure = $"row {r} is not on the {WeightFormats.Name(format)} grid (no α reproduces all its {src.DType} values)";
                return false;
            }
            maxError = Math.Max(maxError, rowError);
            for (int c = 0; c < spec.Cols; c++)
            {
                double d = Quantizer.Dequantize(format, codes[r * spec.Cols + c], alphas[r]) - row[c];
                errSq += d * d;
                normSq += (double)row[c] * row[c];
            }
        }
        var matrix = new QuantizedMatrix(format, spec.Rows, spec.Cols, spec.Cols, codes, alphas);
        byte[] packed = WeightPacker.Pack(matrix);
        writer.AddTensor(spec.Name, format, [spec.Rows, spec.Cols], packed);
        report = new TensorReport(spec, TensorOrigin.Snapped, format, packed.Length, maxError, normSq > 0
            ? Math.Sqrt(errSq / normSq) : 0);
        failure = null;
        return true;
    }

    /// <summary>What became of each GGUF tensor type, one line per (type, outcome).</summary>
    private static IEnumerable<string> GgufOutcomes(ISourceCheckpoint source, List<TensorReport> reports) =>
        reports.GroupBy(r =>
        {
            source.TryGet(r.Name, out var src);
            string from = $"GGUF {src.Ggml?.ToString() ?? src.DType.ToString()} -> {WeightFormats.Name(r.Format)}";
            return r.Origin switch
            {
                TensorOrigin.Snapped => $"{from}, every value exact",
                TensorOrigin.Float when src.Ggml is not null
                    => $"{from}, dequantized exactly (no .pq grid holds these blocks; --bits requantizes them)",
                TensorOrigin.Float => $"{from}, float to float",
                _ => $"{from}, requantized",
            };
        }).Select(g =>
        {
            double maxError = g.Max(r => r.Origin == TensorOrigin.Snapped ? 0 : r.MaxError);
            return $"{g.Key}: {g.Count()} tensor(s){(maxError > 0 ? $", max error {maxError:G3}" : "")}";
        });

    /// <summary>The per-row .pq grids whose levels a ggml block type can hold, fewest bits first: the ones our GGUF
    /// export writes it from.</summary>
    private static WeightFormat[] GridsHolding(GgmlType type) => type switch
    {
        GgmlType.TQ1_0 or GgmlType.TQ2_0 => [WeightFormat.Binary, WeightFormat.Ternary],
        GgmlType.Q2_K => [WeightFormat.Q2Seq],
        GgmlType.Q4_0 => [WeightFormat.Q3Row, WeightFormat.Q4Row],
        GgmlType.Q8_0 => [WeightFormat.I8Row],
        _ => [],
    };

    /// <summary>int4 with one scale per 32 inputs (<see cref="WeightFormat.Q4G32"/>), recovered group by group: Q4_0
    /// blocks whose scale is non-negative, or negative without level −8 (the grid has no +8).</summary>
    private static bool TryAddSnappedGroups(PqWriter writer, TensorSpec spec, float[] w, byte[] codes,
        out TensorReport? report)
    {
        const int Group = 32;
        report = null;
        if (spec.Cols % Group != 0) return false;
        var scales = new float[spec.Rows * (spec.Cols / Group)];
        for (int g = 0; g < scales.Length; g++)
        {
            // Q4_0 and q4_row share the levels −8..7 of one scale, so a group is recovered as a 32-wide q4_row.
            if (!GridRecovery.TryRecoverRow(WeightFormat.Q4Row, w.AsSpan(g * Group, Group), SourceDType.F32,
                codes.AsSpan(g * Group, Group), out scales[g], out _)) return false;
            for (int i = 0; i < Group; i++)
                if (Quantizer.Dequantize(WeightFormat.Q4G32, codes[g * Group + i], scales[g]) != w[g * Group + i])
                    return false;
        }
        var matrix = new QuantizedMatrix(WeightFormat.Q4G32, spec.Rows, spec.Cols, Group, codes, scales);
        byte[] packed = WeightPacker.Pack(matrix);
        writer.AddTensor(spec.Name, WeightFormat.Q4G32, [spec.Rows, spec.Cols], packed);
        report = new TensorReport(spec, TensorOrigin.Snapped, WeightFormat.Q4G32, packed.Length, 0, 0);
        return true;
    }

    private static TensorReport AddQuantized(PqWriter writer, TensorSpec spec, float[] w, WeightFormat format,
        TensorOrigin origin, float[]? rowScales, List<string>? notes = null)
    {
        var q = Quantizer.QuantizeMatrix(format, w, spec.Rows, spec.Cols, rowScales);
        if (Quantizer.CountUnrepresentable(format, w) is > 0 and int zeros)
            notes?.Add($"{spec.Name}: {zeros} exact zeros become +α (binary has no code for ParetoQ's sign(0) = 0)");
        byte[] packed = WeightPacker.Pack(q);
        writer.AddTensor(spec.Name, format, [spec.Rows, spec.Cols], packed);
        double maxError = 0, errSq = 0, normSq = 0;
        for (int r = 0; r < spec.Rows; r++)
            for (int c = 0; c < spec.Cols; c++)
            {
                double v = w[r * spec.Cols + c], d = q.Value(r, c) - v;
                maxError = Math.Max(maxError, Math.Abs(d));
                errSq += d * d;
                normSq += v * v;
            }
        return new TensorReport(spec, origin, format, packed.Length, maxError, normSq > 0 ? Math.Sqrt(errSq / normSq)
            : 0);
    }

    private static TensorReport AddPlain(PqWriter writer, TensorSpec spec, float[] w, WeightFormat format)
    {
        if (!WeightFormats.IsFloat(format)) return AddQuantized(writer, spec, w, format, TensorOrigin.RoundToNearest,
            null);
        byte[] bytes = FloatCodec.Encode(format, w);
        writer.AddTensor(spec.Name, format, [spec.Rows, spec.Cols], bytes);
        double maxError = 0;
        foreach (float v in w) maxError = Math.Max(maxError, Math.Abs(FloatCodec.RoundTrip(format, v) - v));
        return new TensorReport(spec, TensorOrigin.Float, format, bytes.Length, maxError, 0);
    }

    private static float[] ReadRowScales(ISourceCheckpoint source, SourceTensor t, int rows)
    {
        if (t.Elements != rows || t.Shape is not ([_] or [_, 1])) throw new CheckpointException(t.File, t.Name,
            $"has shape [{string.Join(", ", t.Shape)}], not [{rows}, 1] (one scale per output row)");
        float[] s = source.ReadAll(t);
        int bad = Array.FindIndex(s, v => !float.IsFinite(v) || v < 0);
        if (bad >= 0) throw new CheckpointException(t.File, t.Name,
            $"row {bad} has scale {s[bad]}, not a finite non-negative number");
        return s;
    }

    private static WeightFormat? ParetoQFormat(BitsChoice bits) => bits switch
    {
        BitsChoice.Binary => WeightFormat.Binary,
        BitsChoice.Ternary => WeightFormat.Ternary,
        BitsChoice.Bits2 => WeightFormat.Q2Seq,
        BitsChoice.Bits3 => WeightFormat.Q3Row,
        BitsChoice.Bits4 => WeightFormat.Q4Row,
        _ => null,
    };

    /// <summary>ParetoQ's w_bits convention: 0 is ternary, 1–4 are bit widths, 16 and above mean full
    /// precision.</summary>
    private static WeightFormat? FromWBits(int? wBits) => wBits switch
    {
        0 => WeightFormat.Ternary,
        1 => WeightFormat.Binary,
        2 => WeightFormat.Q2Seq,
        3 => WeightFormat.Q3Row,
        4 => WeightFormat.Q4Row,
        _ => null,
    };
}
