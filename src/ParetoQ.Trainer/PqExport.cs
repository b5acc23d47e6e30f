using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>
/// A trained model to .pq through the runtime's own quantizer and writer: in QAT the projections become their grid's
/// codes with the trained α (so the runtime's dequantized weights equal the trainer's fake-quantized ones bit for bit);
/// in full precision they stay f32. Norms are f32; the embedding (and an untied head) take the embedding format given
/// to <see cref="Write"/>.
/// </summary>
public static class PqExport
{
    public static void Write(TransformerModel<float> model, string path, PqTokenizerInfo tokenizer,
        byte[] tokenizerBytes, PqProvenance provenance, WeightFormat embedding = WeightFormat.F32,
            bool overwrite = false)
    {
        var writer = new PqWriter(model.Config.ToJson(), provenance);
        writer.SetTokenizer(tokenizer, tokenizerBytes);
        foreach (var slot in model.Slots)
        {
            var spec = slot.Spec;
            ReadOnlySpan<float> values = model.Parameters.AsSpan(slot.Offset, slot.Length);
            if (spec.IsNorm) writer.AddFloatTensor(spec.Name, WeightFormat.F32, [spec.Cols], values);
            else if (spec.IsProjection && model.Projections is { } grid)
                writer.AddQuantizedTensor(spec.Name,
                    Quantizer.QuantizeMatrix(grid, values, spec.Rows, spec.Cols, model.AlphasOf(spec.Name)));
            else
            {
                var format = spec.IsProjection ? WeightFormat.F32 : embedding;
                if (WeightFormats.IsFloat(format)) writer.AddFloatTensor(spec.Name, format, [spec.Rows, spec.Cols],
                    values);
                else writer.AddQuantizedTensor(spec.Name,
                    Quantizer.QuantizeMatrix(format, values, spec.Rows, spec.Cols));
            }
        }
        writer.Write(path, overwrite);
    }
}
