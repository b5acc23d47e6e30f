using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>
/// Full-precision starting weights for QAT from a model the runtime loads: a .pq file (validated by the runtime's own
/// loader; quantized tensors are dequantized), or any source the converter reads (converted to f32 first).
/// </summary>
public static class ModelImport
{
    public static TransformerModel<float> FromPq(string path)
    {
        using var loaded = LanguageModel.Load(path, CpuBackendOptions.ExactMode);
        var model = new TransformerModel<float>(loaded.Config);
        foreach (var slot in model.Slots)
        {
            var spec = slot.Spec;
            var tensor = loaded.File[spec.Name];
            var values = model.Parameters.AsSpan(slot.Offset, slot.Length);
            var codes = new byte[PackedLayout.MaxPaddedCols(spec.Cols)];
            for (int r = 0; r < spec.Rows; r++)
                ScalarKernels.DequantizeRow(tensor.Format, spec.Rows, spec.Cols, tensor.Data, r, codes,
                    values.Slice(r * spec.Cols, spec.Cols));
        }
        return model;
    }

    /// <summary>
    /// Any model the converter reads, as full-precision weights: a Hugging Face directory, a GGUF file, a llama2.c
    /// checkpoint (with <paramref name="tokenizer"/>, its tokenizer.bin) or a .pq file. Foreign formats are converted to
    /// an f32 .pq first, so the trainer starts from exactly the values the runtime computes with.
    /// </summary>
    public static TransformerModel<float> FromModel(string source, string? tokenizer)
    {
        if (tokenizer is null && SourceCheckpoint.KindOf(source) == SourceKind.Pq) return FromPq(source);
        string converted = Path.Combine(Path.GetTempPath(), $"paretoq-import-{Guid.NewGuid():N}.pq");
        try
        {
            ModelSources.Convert(source, tokenizer, converted, new ConversionOptions
            {
                Bits = BitsChoice.F32, Head = WeightFormat.F32, Tool = "paretoq-train import",
            });
            return FromPq(converted);
        }
        finally
        {
            File.Delete(converted);
        }
    }
}
