# Export data sets shipped with R packages to data/*.csv for the multilevel (nested and
# crossed) examples and reference fits.
#
#   Rscript data/export_lme4_data.R     (from the repository root)
#
# Needs R with lme4 and mlmRev (Debian: apt-get install r-cran-lme4 r-cran-mlmrev). Factors
# are written as their labels (text); rows stay in the packages' order. Writes
#   data/egsingle.csv       mlmRev::egsingle; retained, black, hispanic are factors with
#                           labels "0"/"1" and are written as 0/1 numbers
#   data/pastes.csv         lme4::Pastes (sample = batch:cask, as lme4 supplies it)
#   data/penicillin.csv     lme4::Penicillin
#   data/insteval.csv.gz    lme4::InstEval, columns reordered to y first, gzip -n -9
suppressPackageStartupMessages({
  library(lme4)
  library(mlmRev)
})
out <- "data"

as_text <- function(df) {
  for (v in names(df)) if (is.factor(df[[v]])) df[[v]] <- as.character(df[[v]])
  df
}
as_01 <- function(f) {
  stopifnot(identical(levels(f), c("0", "1")))
  as.integer(as.character(f))
}

eg <- as_text(egsingle)
for (v in c("retained", "black", "hispanic")) eg[[v]] <- as_01(egsingle[[v]])
write.csv(eg, file.path(out, "egsingle.csv"), row.names = FALSE)

write.csv(as_text(Pastes), file.path(out, "pastes.csv"), row.names = FALSE)
write.csv(as_text(Penicillin), file.path(out, "penicillin.csv"), row.names = FALSE)

ie <- as_text(InstEval)[c("y", "s", "d", "studage", "lectage", "service", "dept")]
csv <- file.path(out, "insteval.csv")
write.csv(ie, csv, row.names = FALSE)
# gzip -n: no name or time stamp in the header, so the file is the same on every run.
stopifnot(system2("gzip", c("-n", "-9", "-f", csv)) == 0)
