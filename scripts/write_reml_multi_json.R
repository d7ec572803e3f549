# lme4 fits of models with several grouping factors in bayesmix's REML JSON format
# version 2 (described at the top of tests/reference/make_reference_multi.R).
#
#   out <- "tests/reference/multi"; source("scripts/write_reml_multi_json.R")
#   fit_both(strength ~ 1 + (1 | batch/cask), pastes, "data/pastes.csv", "pastes")
#
# fit_both() writes <out>/<stem>_reml.json (and _ml.json) into the folder `out`.
suppressPackageStartupMessages(library(lme4))
# The control of make_reference.R: BOBYQA run to rhoend = 1e-12 rather than lme4's default
# stopping rule, which stops a little short along flat directions.
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# The helpers that map lme4's names of grouping factors to the written ones
# (.rj_written_groups, .rj_group_map, .rj_reorder_levels) are write_reml_json.R's.
source("scripts/write_reml_json.R")

write_reml_json_v2 <- function(fit, path, data_path, formula = NULL, note = NULL,
                               refits = 0L) {
  stopifnot(inherits(fit, "merMod"))
  # lmer expands '||' in formula(fit); the formula as written is passed in.
  f <- if (is.null(formula)) formula(fit) else formula
  written <- .rj_written_groups(f)
  vc <- lme4::VarCorr(fit)
  cnms <- lme4::getME(fit, "cnms")          # names: the factors, not made unique
  flist <- lme4::getME(fit, "flist")
  bars <- lme4::findbars(f)
  bar_group <- vapply(bars, function(b) paste(deparse(b[[3]], width.cutoff = 500L), collapse = ""),
                      "")
  # lme4 (mkReTrms) sorts the terms by their number of levels, decreasing: rev(order(nl)) when
  # any later term has more levels than an earlier one.
  nl <- vapply(bar_group, function(g) nlevels(flist[[g]]), 0L)
  ord <- if (any(diff(nl) > 0)) rev(order(nl)) else seq_along(nl)
  stopifnot(identical(unname(bar_group[ord]), names(cnms)), length(vc) == length(ord))
  random <- lapply(seq_along(vc), function(k) {
    g <- .rj_group_map(names(cnms)[k], written)
    cov_u <- vc[[k]]
    list(group = g$name, lme4_group = names(cnms)[k], block = ord[k],
         nlevels = nlevels(flist[[names(cnms)[k]]]),
         terms = I(colnames(cov_u)), sd = I(unname(attr(cov_u, "stddev"))),
         corr = unname(matrix(attr(cov_u, "correlation"), nrow(cov_u))))
  })
  re <- lme4::ranef(fit, condVar = FALSE)
  modes <- lapply(names(re), function(nm) {
    g <- .rj_group_map(nm, written)
    m <- as.matrix(re[[nm]])
    list(group = g$name, lme4_group = nm,
         levels = I(.rj_reorder_levels(rownames(re[[nm]]), g$perm)),
         terms = I(colnames(m)), values = unname(m))
  })
  method <- if (lme4::isREML(fit)) "REML" else "ML"
  lme4_msgs <- as.character(fit@optinfo$conv$lme4$messages)
  opt_msgs <- if (fit@optinfo$conv$opt != 0) as.character(fit@optinfo$message) else character(0)
  singular_msg <- grepl("singular", lme4_msgs, fixed = TRUE)
  fe <- lme4::fixef(fit)
  v <- as.matrix(vcov(fit))
  out <- list(
    format = "bayesmix-reml",
    version = 2L,
    source = paste0("lme4::lmer (lme4 ", packageVersion("lme4"), ")"),
    method = method,
    formula = paste(deparse(f, width.cutoff = 500L), collapse = " "),
    outcome = as.character(f[[2]]),
    nobs = as.integer(nobs(fit)),
    fixed = lapply(seq_along(fe), function(k) list(
      term = names(fe)[k], estimate = unname(fe[k]), se = unname(sqrt(v[k, k]))
    )),
    vcov = unname(v),
    random = random,
    sigma = sigma(fit),
    criterion = if (method == "REML") lme4::REMLcrit(fit) else deviance(fit),
    loglik = as.numeric(logLik(fit)),
    theta = I(unname(lme4::getME(fit, "theta"))),
    converged = fit@optinfo$conv$opt == 0 && all(singular_msg),
    singular = lme4::isSingular(fit),
    messages = I(c(opt_msgs, lme4_msgs)),
    modes = modes,
    data = data_path,
    refits = refits
  )
  if (!is.null(note)) out$note <- note
  jsonlite::write_json(out, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                       na = "null")
  invisible(out)
}

fit_both <- function(formula, data, data_path, stem, methods = c("REML", "ML"), note = NULL) {
  for (method in methods) {
    reml <- method == "REML"
    crit <- function(m) if (reml) REMLcrit(m) else deviance(m)
    m <- lmer(formula, data = data, REML = reml, control = ctrl)
    # Restart BOBYQA from its optimum while that lowers the criterion (at most 3 times): along
    # a flat direction one run can stop short (four_level: SD of region by 2e-4, criterion by
    # 9e-8); elsewhere a restart moves the SDs by 1e-6 at most.
    refits <- 0L
    while (refits < 3L) {
      m2 <- lmer(formula, data = data, REML = reml, control = ctrl, start = getME(m, "theta"))
      if (crit(m2) >= crit(m)) break
      m <- m2
      refits <- refits + 1L
    }
    file <- file.path(out, paste0(stem, "_", tolower(method), ".json"))
    o <- write_reml_json_v2(m, file, data_path, formula, note, refits)
    cat(sprintf("%-30s %-4s refits %d sd=%s sigma=%.6f crit=%.6f%s\n", basename(file), method,
                refits,
                paste(vapply(o$random, function(r) paste(sprintf("%.5f", r$sd), collapse = "/"),
                             ""), collapse = ","),
                o$sigma, o$criterion, if (o$singular) " SINGULAR" else ""))
  }
}
