namespace ParetoQ.Runtime.Model;

/// <summary>
/// The sliding-window rule, in one place for the CPU backends, the ILGPU kernels and the trainer: a query at position
/// pos sees positions [FirstVisible(pos, window), pos], the <c>window</c> most recent ones including itself. A window
/// of 0 means a global layer, which sees every earlier position.
/// </summary>
public static class AttentionWindow
{
    public static int FirstVisible(int pos, int window) => window > 0 ? Math.Max(0, pos - window + 1) : 0;

    /// <summary>The window of weight layer <paramref name="layer"/>: sliding_window for local layers, 0 for global
    /// ones.</summary>
    public static int Of(ModelConfig config, int layer) =>
        config.LayerTypes[layer] == AttentionKind.Local ? config.SlidingWindow : 0;
}
